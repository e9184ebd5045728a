/* main — wires the modules together: parses the command line, loads the configuration,
 * brings modules up in dependency order and takes them down in reverse. No logic of its
 * own lives here beyond choosing which command runs.
 *
 * Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.
 */
#include "tsgraphd/config.h"
#include "tsgraphd/log.h"
#include "tsgraphd/tsapi.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE 2

static void usage(FILE *out)
{
	fprintf(out, "Usage: tsgraphd [-c FILE] [-h] [-V] [COMMAND]\n"
		     "\n"
		     "Keeps a security asset graph in step with a Threat Stack organization and\n"
		     "pushes only what changed.\n"
		     "\n"
		     "Commands:\n"
		     "  run              run the daemon (the default)\n"
		     "  sync [--dry-run] one full sync and push, then exit\n"
		     "  check            validate the configuration and test the credentials\n"
		     "  status           last syncs, counts per type, backlog per sink\n"
		     "\n"
		     "Options:\n"
		     "  -c, --config FILE  configuration file (default " CONFIG_DEFAULT_PATH ")\n"
		     "  -h, --help         show this help and exit\n"
		     "  -V, --version      show the version and exit\n"
		     "\n"
		     "Exit status: 0 success, 1 runtime failure, 2 usage or configuration error.\n"
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
	int r, ret = EXIT_FAILURE;

	printf("configuration OK: %s (org %s, %zu sink%s)\n", c->file, c->ts.org_id, c->n_sinks,
	       c->n_sinks == 1 ? "" : "s");
	fflush(stdout);
	r = tsapi_new(c, NULL, &api, &err);
	if (r < 0) {
		printf("credentials NOT checked: %s\n", err.message);
		goto out;
	}
	r = tsapi_self_test(api, &err);
	if (r < 0) {
		printf("credentials FAILED (%s): %s\n", tsapi_strerror(err.code), err.message);
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

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char *config_path = CONFIG_DEFAULT_PATH, *command = "run";
	char error[CONFIG_ERROR_MAX];
	struct config *c = NULL;
	int opt, r, ret = EXIT_FAILURE;

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
		command = argv[optind++];
	if (strcmp(command, "run") != 0 && strcmp(command, "sync") != 0 &&
	    strcmp(command, "check") != 0 && strcmp(command, "status") != 0) {
		fprintf(stderr, "tsgraphd: unknown command '%s' (try --help)\n", command);
		return EXIT_USAGE;
	}

	r = config_load(config_path, &c, error);
	if (r < 0) {
		fprintf(stderr, "tsgraphd: %s\n", error);
		return r == -ENOMEM ? EXIT_FAILURE : EXIT_USAGE;
	}
	log_set_level(c->log_level);
	r = config_register_secrets(c);
	if (r < 0) {
		log_error("cannot register secrets for redaction: %s", strerror(-r));
		goto out;
	}

	if (strcmp(command, "check") == 0) {
		ret = cmd_check(c);
	} else {
		fprintf(stderr, "tsgraphd: command '%s' is not available in this version yet\n",
			command);
		ret = EXIT_USAGE;
	}
out:
	config_free(c);
	log_close();
	return ret;
}
