/* main — wires the modules together: parses the command line, loads the configuration,
 * brings modules up in dependency order and takes them down in reverse. Each command is a
 * short function here; the work lives in the modules.
 *
 * Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error, 3 a sync or an
 * export interrupted by SIGINT or SIGTERM (nothing applied; an export to -o FILE wrote
 * nothing).
 */
#include "tsgraphd/cancel.h"
#include "tsgraphd/config.h"
#include "tsgraphd/daemon.h"
#include "tsgraphd/export.h"
#include "tsgraphd/log.h"
#include "tsgraphd/sink.h"
#include "tsgraphd/store.h"
#include "tsgraphd/sync.h"
#include "tsgraphd/tsapi.h"
#include "tsgraphd/util.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE	 2
#define EXIT_INTERRUPTED 3 /* a sync or export stopped by SIGINT or SIGTERM */

/* Bytes that came from outside (API answers, stored messages, arguments) go to the terminal
 * through str_escape(); E(buf, s) is the escaped, cut copy of s. */
#define E(b, s) (str_escape((b), sizeof(b), (s) ? (s) : "", (s) ? strlen(s) : 0), (b))

static void usage(FILE *out)
{
	fprintf(out, "Usage: tsgraphd [-c FILE] [-h] [-V] [COMMAND [OPTIONS]]\n"
		     "\n"
		     "Keeps a security asset graph in step with a Threat Stack organization and\n"
		     "pushes only what changed.\n"
		     "\n"
		     "Commands:\n"
		     "  run                 run the daemon (the default)\n"
		     "  sync [--dry-run] [--allow-mass-delete]\n"
		     "                      one full sync, then deliver the changes to every sink\n"
		     "                      --dry-run prints the changes and writes nothing\n"
		     "                      --allow-mass-delete lifts the max_delete_fraction "
		     "guard once\n"
		     "  check               validate the configuration and test the credentials\n"
		     "  status              last syncs, counts per type, backlog per sink\n"
		     "  export [--format json|ndjson|dot] [-o FILE]\n"
		     "                      the stored graph, read-only (see 'export --help')\n"
		     "\n"
		     "Options:\n"
		     "  -c, --config FILE  configuration file (default " CONFIG_DEFAULT_PATH ")\n"
		     "  -h, --help         show this help and exit\n"
		     "  -V, --version      show the version and exit\n"
		     "\n"
		     "Exit status: 0 success, 1 runtime failure, 2 usage or configuration error,\n"
		     "3 sync or export interrupted by SIGINT or SIGTERM (nothing applied or "
		     "written).\n"
		     "Secrets are read from files or systemd credentials, never from the command "
		     "line.\n");
}

/* Validates (already done by config_load) and then proves the credentials: the Hawk
 * self-test must be accepted and its answer must carry a Server-Authorization that
 * verifies with our key, so both directions of the signature are checked. */
static int cmd_check(const struct config *c)
{
	struct tsapi_error err = { 0 };
	struct tsapi *api = NULL;
	char e[ESCAPE_LONG];
	int r, ret = EXIT_FAILURE;

	printf("configuration OK: %s (org %s, %zu sink%s)\n", c->file, c->ts.org_id, c->n_sinks,
	       c->n_sinks == 1 ? "" : "s");
	fflush(stdout);
	r = tsapi_new(c, NULL, &api, &err);
	if (r < 0) {
		printf("credentials NOT checked: %s\n", E(e, err.message));
		goto out;
	}
	r = tsapi_self_test(api, &err);
	if (r < 0) {
		printf("credentials FAILED (%s): %s\n", tsapi_strerror(err.code),
		       E(e, err.message));
		if (err.code == TSAPI_E_AUTH)
			printf("hint: check user_id, org_id and the API key, and that this "
			       "host's clock is right\n");
		goto out;
	}
	printf("credentials OK: Threat Stack accepted the Hawk signature and its answer "
	       "verified (%s)\n",
	       c->ts.api_url);
	if (tsapi_clock_offset(api) != 0)
		printf("warning: the local clock is off by %lld s from Threat Stack's; fix NTP\n",
		       (long long)tsapi_clock_offset(api));
	ret = EXIT_SUCCESS;
out:
	tsapi_free(api);
	return ret;
}

/* so: how to open (dry runs and status only read); the config adds synchronous. */
static int open_store(const struct config *c, struct store_options so, struct store **ret)
{
	char err[STORE_ERR_MAX];
	int r;

	so.synchronous_full = c->store.synchronous_full;
	r = store_open(c->store.path, &so, ret, err);

	if (r < 0)
		log_error("store: %s", err);
	return r;
}

/* Dry runs print each change as one line, and count them by op. */
struct dry_counts {
	int64_t created, updated, deleted;
};

static int print_change(const struct outbox_row *r, void *ud)
{
	char type[ESCAPE_SHORT], key[ESCAPE_LONG], changed[ESCAPE_LONG];
	struct dry_counts *n = ud;

	if (strcmp(r->op, "create") == 0)
		n->created++;
	else if (strcmp(r->op, "update") == 0)
		n->updated++;
	else
		n->deleted++;
	printf("%-6s %-12s %s %s%s%s\n", r->op, r->kind, E(type, r->type), E(key, r->key),
	       r->changed ? " changed=" : "", r->changed ? E(changed, r->changed) : "");
	return 0;
}

/* SIGINT and SIGTERM fire the sync's cancel handle: every wait wakes, nothing half-done is
 * applied, and the run is recorded "interrupted". A second signal ends the process. */
static struct cancel *sync_cancel;
static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	if (stop_signal) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	stop_signal = sig;
	cancel_fire(sync_cancel);
}

static int catch_stop_signals(void)
{
	struct sigaction sa = { .sa_handler = on_stop_signal };

	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
		return -errno;
	return 0;
}

/* On a terminal, one line that updates in place; elsewhere nothing (the log has a line per
 * listing). The cursor goes back to the line's start, so a log line overwrites it. */
static void print_progress(const struct sync_progress *p, void *ud)
{
	int64_t now = monotonic_ms();
	char of[48] = "", eta[48] = "";

	(void)ud;
	if (!p->running) {
		fputs("\r\033[K", stderr);
		return;
	}
	if (p->expected > 0)
		snprintf(of, sizeof(of), " of about %" PRId64, p->expected);
	if (p->expected > p->objects && p->objects > 0)
		snprintf(eta, sizeof(eta), ", about %" PRId64 " s left in it",
			 (p->expected - p->objects) * (now - p->listing_ms) / p->objects / 1000);
	fprintf(stderr,
		"\r\033[Ksync: %s: %" PRId64 "%s objects%s; %" PRId64 " in all, %" PRIu64
		" requests (%" PRIu32 " of %" PRIu32 "/min left), %" PRId64 " s\r",
		p->listing, p->objects, of, eta, p->total, p->requests, p->left, p->per_minute,
		(now - p->started_ms) / 1000);
	fflush(stderr);
}

static int cmd_sync(const struct config *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dry-run", no_argument, NULL, 'n' },
		{ "allow-mass-delete", no_argument, NULL, 'M' },
		{ NULL, 0, NULL, 0 },
	};
	struct sync_options so = { .source = "poll" };
	struct dry_counts dry = { 0 };
	struct sync_report rep = { 0 };
	struct tsapi_error err = { 0 };
	struct tsapi_options ao = { 0 };
	struct tsapi_limiter *limiter = NULL;
	struct tsapi *api = NULL;
	struct sync *sy = NULL;
	struct store *s = NULL;
	int opt, r, ret = EXIT_FAILURE, lock_fd = -1;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'n':
			so.dry_run = true;
			break;
		case 'M':
			so.allow_mass_delete = true;
			break;
		default:
			fprintf(stderr, "usage: tsgraphd sync [--dry-run] [--allow-mass-delete]\n");
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		char e[ESCAPE_SHORT];

		fprintf(stderr, "tsgraphd sync: unexpected argument '%s'\n", E(e, argv[optind]));
		return EXIT_USAGE;
	}
	if (so.dry_run) {
		so.on_change = print_change;
		so.userdata = &dry;
	}
	if (isatty(STDERR_FILENO) && !so.dry_run)
		so.on_progress = print_progress;
	if (!so.dry_run) {
		r = store_lock(c->store.path, &lock_fd);
		if (r < 0) {
			log_error("store: %s: %s", c->store.path, store_lock_strerror(r));
			goto out;
		}
	}
	/* A dry run opens the store read-only: it stages in TEMP tables and lists the plan, so
	 * no lock, no migration, not a byte written (docs/tsgraphd.8). */
	if (open_store(c,
		       (struct store_options){ .memory_if_missing = so.dry_run,
					       .read_only = so.dry_run },
		       &s) < 0)
		goto out;
	if (!so.dry_run && store_runs_sweep(s) < 0)
		log_warning("store: cannot mark the runs of a dead process interrupted: %s",
			    store_errmsg(s));
	r = cancel_new(&sync_cancel);
	if (r == 0)
		r = catch_stop_signals();
	if (r < 0) {
		log_error("sync: cannot set up signal handling: %s", strerror(-r));
		goto out;
	}
	r = tsapi_limiter_new(c->ts.rate_limit, 0, &limiter);
	if (r < 0) {
		log_error("sync: cannot make the rate limiter: %s", strerror(-r));
		goto out;
	}
	ao.cancel = sync_cancel;
	ao.limiter = limiter;
	if (tsapi_new(c, &ao, &api, &err) < 0) {
		log_error("threatstack client: %s", err.message);
		goto out;
	}
	r = sync_new(c, s, api, sync_cancel, &sy);
	if (r < 0) {
		log_error("sync: %s", strerror(-r));
		goto out;
	}
	r = sync_full(sy, &so, &rep);
	if (so.on_progress)
		fprintf(stderr, "\r\033[K");
	if (r == -ECANCELED) {
		printf("sync interrupted by %s: nothing applied\n", strsignal(stop_signal));
		ret = EXIT_INTERRUPTED;
		goto out;
	}
	if (r < 0 && r != -EAGAIN)
		goto out;
	if (so.dry_run) {
		rep.diff.created = dry.created;
		rep.diff.updated = dry.updated;
		rep.diff.deleted = dry.deleted;
	}
	printf("%s: %" PRId64 " created, %" PRId64 " updated, %" PRId64 " deleted "
	       "(%" PRId64 " objects fetched)%s%s\n",
	       so.dry_run ? "dry run, nothing written" : "sync", rep.diff.created, rep.diff.updated,
	       rep.diff.deleted, rep.staged, r == -EAGAIN ? "; incomplete: " : "",
	       r == -EAGAIN ? rep.message : "");
	if (rep.diff.n_held)
		printf("deletions held back by the mass-delete guard for %zu type%s "
		       "(see 'tsgraphd status')\n",
		       rep.diff.n_held, rep.diff.n_held == 1 ? "" : "s");
	if (!so.dry_run && sink_drain_all(c, s, sync_cancel, true, NULL, NULL) < 0)
		goto out;
	if (!so.dry_run)
		sink_prune_outbox(c, s);
	ret = r == 0 && rep.diff.n_held == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
out:
	sync_free(sy);
	tsapi_free(api);
	tsapi_limiter_free(limiter);
	store_close(s);
	if (lock_fd >= 0)
		close(lock_fd);
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	cancel_free(sync_cancel);
	sync_cancel = NULL;
	return ret;
}

static int print_run(const struct store_run *r, void *ud)
{
	char when[ISO8601_MS_MAX], e[ESCAPE_LONG];

	(void)ud;
	format_iso8601_ms(r->started, when);
	printf("  #%-5" PRId64 " %-4s %-11s %s", r->id, r->kind, r->result, when);
	if (r->finished)
		printf(" %6.1fs", (double)(r->finished - r->started) / 1000.0);
	printf("  +%" PRId64 " ~%" PRId64 " -%" PRId64 "\n", r->created, r->updated, r->deleted);
	if (r->held_back)
		printf("         held back (mass-delete guard): %s\n", E(e, r->held_back));
	if (r->message)
		printf("         %s\n", E(e, r->message));
	return 0;
}

static int print_count(const char *type, int64_t count, void *ud)
{
	int64_t *total = ud;
	char e[ESCAPE_SHORT];

	printf("  %-45s %8" PRId64 "\n", E(e, type), count);
	*total += count;
	return 0;
}

/* When the sink last delivered, and its last error while it has not delivered since. */
static void print_sink_state(const struct store_sink_state *st)
{
	char when[ISO8601_MS_MAX], e[ESCAPE_LONG];

	if (st->last_ok) {
		format_iso8601_ms(st->last_ok, when);
		printf("    last delivery %s\n", when);
	}
	if (st->failures > 0) {
		format_iso8601_ms(st->last_error_at, when);
		printf("    ! %" PRId64 " failed attempt%s, the last at %s: %s\n", st->failures,
		       st->failures == 1 ? "" : "s", when, E(e, st->last_error));
	}
}

static int cmd_status(const struct config *c)
{
	struct store *s = NULL;
	int64_t total = 0, max_seq = 0;
	int ret = EXIT_FAILURE;

	/* Read-only: works for a user who may read the store but not write it, and beside a
	 * running sync. */
	if (open_store(c, (struct store_options){ .must_exist = true, .read_only = true }, &s) < 0)
		goto out;
	printf("store: %s\n", c->store.path);
	printf("last syncs (+created ~updated -deleted):\n");
	if (store_runs_each(s, 5, print_run, NULL) < 0)
		goto fail;
	printf("graph objects:\n");
	if (store_type_counts(s, print_count, &total) < 0)
		goto fail;
	printf("  %-45s %8" PRId64 "\n", "total", total);
	if (store_outbox_max_seq(s, &max_seq) < 0)
		goto fail;
	printf("sinks (outbox at seq %" PRId64 "):\n", max_seq);
	for (size_t i = 0; i < c->n_sinks; i++) {
		const struct config_sink *cfg = &c->sinks[i];
		struct store_sink_state st;
		char note[SINK_ERR_MAX];

		if (store_sink_state_get(s, cfg->name, &st) < 0 || sink_inspect(cfg, s, note) < 0)
			goto fail;
		printf("  %-20s %-10s delivered to seq %" PRId64 ", backlog %" PRId64 "\n",
		       cfg->name, config_sink_type_to_string(cfg->type), st.cursor,
		       max_seq - st.cursor);
		print_sink_state(&st);
		if (note[0])
			printf("    ! %s\n", note);
	}
	if (c->n_sinks == 0)
		printf("  (none configured)\n");
	ret = EXIT_SUCCESS;
	goto out;
fail:
	log_error("status: cannot read the store: %s", store_errmsg(s));
out:
	store_close(s);
	return ret;
}

/* export: its options are read before the configuration, so -c may follow the command. */
struct export_args {
	struct export_options opt;
	const char *output; /* NULL: stdout */
};

static void export_usage(FILE *out)
{
	fprintf(out,
		"Usage: tsgraphd [-c FILE] export [--format json|ndjson|dot] [-c FILE] [-o FILE]\n"
		"\n"
		"Writes the stored graph, read from the store read-only (no lock; works while\n"
		"'tsgraphd run' or a sync writes it), as one consistent snapshot:\n"
		"  json    {\"entities\":[...],\"relationships\":[...]}, as JupiterOne's\n"
		"          synchronization API receives them (the default)\n"
		"  ndjson  one change-log line per object (op \"create\"), every line with the\n"
		"          outbox seq N of the snapshot: follow the change log after seq N\n"
		"  dot     Graphviz DOT: the account, its agents, what they protect and found\n"
		"\n"
		"Options:\n"
		"  -f, --format FORMAT  json, ndjson or dot\n"
		"  -o, --output FILE    write FILE (a temporary file renamed into place, mode\n"
		"                       0640 less the umask) instead of stdout ('-': stdout)\n"
		"  -c, --config FILE    configuration file (default " CONFIG_DEFAULT_PATH ")\n"
		"  -h, --help           show this help and exit\n");
}

/* -1 to go on, else the exit status (--help, or a usage error). */
static int export_parse(int argc, char **argv, struct export_args *ret, const char **config_path)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char e[ESCAPE_SHORT];
	int opt;

	*ret = (struct export_args){ .opt.format = EXPORT_JSON };
	optind = 1;
	while ((opt = getopt_long(argc, argv, "f:o:c:h", opts, NULL)) != -1) {
		switch (opt) {
		case 'f':
			if (export_format_from_string(optarg, &ret->opt.format) < 0) {
				fprintf(stderr,
					"tsgraphd export: unknown format '%s' (json, ndjson or "
					"dot)\n",
					E(e, optarg));
				return EXIT_USAGE;
			}
			break;
		case 'o':
			ret->output = strcmp(optarg, "-") == 0 ? NULL : optarg;
			break;
		case 'c':
			*config_path = optarg;
			break;
		case 'h':
			export_usage(stdout);
			return EXIT_SUCCESS;
		default:
			export_usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tsgraphd export: unexpected argument '%s'\n", E(e, argv[optind]));
		return EXIT_USAGE;
	}
	return -1;
}

static volatile sig_atomic_t export_stop;

static void on_export_signal(int sig)
{
	export_stop = sig;
}

static int cmd_export(const struct config *c, struct export_args *a)
{
	struct sigaction sa = { .sa_handler = on_export_signal };
	struct export_counts n = { 0 };
	char err[EXPORT_ERR_MAX];
	struct store *s = NULL;
	int r, ret = EXIT_FAILURE;

	/* Read-only, as status: no lock, no migration, nothing written beside the store. */
	if (open_store(c, (struct store_options){ .must_exist = true, .read_only = true }, &s) < 0)
		goto out;
	/* SIGINT and SIGTERM end the export between two objects: -o leaves FILE as it was. */
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) {
		log_error("export: cannot set up signal handling: %s", strerror(errno));
		goto out;
	}
	a->opt.now = now_ms();
	a->opt.stop = &export_stop;
	r = a->output ? export_to_file(s, &a->opt, a->output, &n, err)
		      : export_write(s, &a->opt, stdout, &n, err);
	/* A signal during a blocking write (a pipe) fails it with EINTR: interrupted too. */
	if (r == -ECANCELED || (r < 0 && export_stop)) {
		log_error("export interrupted by %s: %s", strsignal(export_stop),
			  a->output ? "nothing written" : "the output is incomplete");
		ret = EXIT_INTERRUPTED;
		goto out;
	}
	if (r < 0) {
		log_error("export: %s", err);
		goto out;
	}
	if (a->output)
		log_info("export: %s: %" PRId64 " entities, %" PRId64 " relationships (%s, "
			 "outbox seq %" PRId64 ")",
			 a->output, n.entities, n.relationships,
			 export_format_to_string(a->opt.format), n.seq);
	ret = EXIT_SUCCESS;
out:
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	store_close(s);
	return ret;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = CONFIG_DEFAULT_PATH, *command = "run";
	bool curl_ready = false;
	char error[CONFIG_ERROR_MAX], e[ESCAPE_SHORT];
	struct config *c = NULL;
	struct export_args export_args = { 0 };
	int opt, r, ret = EXIT_FAILURE, cmd_argc;
	char **cmd_argv;

	log_init(STDERR_FILENO, LOG_LEVEL_INFO);
	while ((opt = getopt_long(argc, argv, "+c:hV", opts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return EXIT_SUCCESS;
		case 'V':
			printf("tsgraphd %s\n", TSGRAPHD_VERSION);
			return EXIT_SUCCESS;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc)
		command = argv[optind];
	/* The command's own arguments, with the command as their argv[0]. */
	cmd_argc = optind < argc ? argc - optind : 1;
	cmd_argv = optind < argc ? argv + optind : (char *[]){ (char *)command, NULL };
	if (strcmp(command, "run") != 0 && strcmp(command, "sync") != 0 &&
	    strcmp(command, "check") != 0 && strcmp(command, "status") != 0 &&
	    strcmp(command, "export") != 0) {
		fprintf(stderr, "tsgraphd: unknown command '%s' (try --help)\n", E(e, command));
		return EXIT_USAGE;
	}
	if (strcmp(command, "export") == 0) {
		r = export_parse(cmd_argc, cmd_argv, &export_args, &config_path);
		if (r >= 0)
			return r;
	} else if (strcmp(command, "sync") != 0 && cmd_argc > 1) {
		fprintf(stderr, "tsgraphd %s: unexpected argument '%s'\n", command,
			E(e, cmd_argv[1]));
		return EXIT_USAGE;
	}

	/* status and export read the store only: they never open the API key or any other
	 * secret. */
	r = config_load_flags(config_path,
			      strcmp(command, "status") == 0 || strcmp(command, "export") == 0
				      ? CONFIG_NO_SECRETS
				      : 0,
			      &c, error);
	if (r < 0) {
		fprintf(stderr, "tsgraphd: %s\n", error);
		return r == -ENOMEM ? EXIT_FAILURE : EXIT_USAGE;
	}
	log_set_level(c->log_level);
	r = config_register_secrets((const struct config *[]){ c }, 1);
	if (r < 0) {
		log_error("cannot register secrets for redaction: %s", strerror(-r));
		goto out;
	}
	/* libcurl's global state, before any client (and, in the daemon, any thread). */
	if (tsapi_global_init() < 0) {
		log_error("libcurl initialisation failed");
		goto out;
	}
	curl_ready = true;

	if (strcmp(command, "check") == 0)
		ret = cmd_check(c);
	else if (strcmp(command, "sync") == 0)
		ret = cmd_sync(c, cmd_argc, cmd_argv);
	else if (strcmp(command, "status") == 0)
		ret = cmd_status(c);
	else if (strcmp(command, "export") == 0)
		ret = cmd_export(c, &export_args);
	else {
		r = daemon_run(c);
		ret = r == 0 ? EXIT_SUCCESS : r == -EINVAL ? EXIT_USAGE : EXIT_FAILURE;
	}
out:
	if (curl_ready)
		tsapi_global_cleanup();
	config_free(c);
	log_close();
	return ret;
}
