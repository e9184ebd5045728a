/* tsjson_checks — what both tsjson fuzz targets assert of every parser of API objects:
 * a refusal comes with exactly one non-empty line of printable bytes in err (it goes into a
 * log line), and what was parsed is freed (the leak checker judges it). */
#ifndef TSGRAPHD_FUZZ_TSJSON_CHECKS_H
#define TSGRAPHD_FUZZ_TSJSON_CHECKS_H

#include "tsgraphd/tsjson.h"

#include <stdlib.h>
#include <string.h>

static void check_err(int r, const char *err)
{
	if (r >= 0)
		return;
	if (!err[0] || strnlen(err, TSJSON_ERR_MAX) >= TSJSON_ERR_MAX)
		abort();
	for (const char *p = err; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			abort();
}

static void all_parsers(json_object *o)
{
	char err[TSJSON_ERR_MAX];
	struct ts_agent ag;
	struct ts_vuln v;
	struct ts_server s;
	struct ts_alert al;
	int r;

	if ((r = tsjson_agent(o, &ag, err)) == 0)
		ts_agent_free(&ag);
	check_err(r, err);
	if ((r = tsjson_vuln(o, &v, err)) == 0)
		ts_vuln_free(&v);
	check_err(r, err);
	if ((r = tsjson_server(o, &s, err)) == 0)
		ts_server_free(&s);
	check_err(r, err);
	if ((r = tsjson_alert(o, &al, err)) == 0)
		ts_alert_free(&al);
	check_err(r, err);
}

#endif
