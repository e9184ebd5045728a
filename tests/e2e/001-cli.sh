#!/usr/bin/env bash
# The command line: help, version, usage errors, config errors (file, line, key; exit 2),
# `check` on a good config, and the example config is itself valid.
. "$(dirname "$0")/lib.sh"

expect_status 0 "$TSGRAPHD" --help
expect_output "Usage: tsgraphd [-c FILE]"
expect_output "sync [--dry-run]"
expect_status 0 "$TSGRAPHD" -V
expect_output "tsgraphd 0."
expect_status 2 "$TSGRAPHD" --bogus
expect_status 2 "$TSGRAPHD" -c "$WORK/x.conf" frobnicate
expect_output "unknown command 'frobnicate'"

expect_status 2 "$TSGRAPHD" -c "$WORK/missing.conf" check
expect_output "$WORK/missing.conf: No such file or directory"

printf 'api-key-for-tests\n' >"$WORK/api.key"
chmod 600 "$WORK/api.key"
cat >"$WORK/good.conf" <<CONF
[threatstack]
org_name = Prod
org_id = 545d0293b620cd090d000023
user_id = 5537c4284e9684df7e000014
api_key_file = api.key
[store]
path = $WORK/state.db
CONF
expect_status 0 "$TSGRAPHD" -c "$WORK/good.conf" check
expect_output "configuration OK"

cp "$WORK/good.conf" "$WORK/bad.conf"
printf 'rate_limit = lots\n' >>"$WORK/bad.conf"
# the key lands in [store]: unknown there
expect_status 2 "$TSGRAPHD" -c "$WORK/bad.conf" check
expect_output "bad.conf:8: rate_limit: unknown key in [store]"
sed -i 's/^\[store\]/rate_limit = 15O\n[store]/' "$WORK/bad.conf"
expect_status 2 "$TSGRAPHD" -c "$WORK/bad.conf" check
expect_output "bad.conf:6: rate_limit: not a number"

# The secret never reaches the output, even in an error about its own line.
printf '[threatstack]\norg_name=a\norg_id=b\nuser_id=c\napi_key = sup3r-s3cret-key\napi_key = again\n' >"$WORK/dup.conf"
chmod 600 "$WORK/dup.conf"
expect_status 2 "$TSGRAPHD" -c "$WORK/dup.conf" check
expect_output "dup.conf:6: api_key: set twice (first at line 5)"
expect_no_output "sup3r-s3cret"

# The shipped example is valid once its secret file exists.
sed "s#^api_key_file = .*#api_key_file = $WORK/api.key#; s#^path = /var/lib.*#path = $WORK/state.db#" \
	"$TESTS_DIR/../conf/tsgraphd.conf.example" >"$WORK/example.conf"
expect_status 0 "$TSGRAPHD" -c "$WORK/example.conf" check
expect_output "configuration OK"
echo "cli ok"
