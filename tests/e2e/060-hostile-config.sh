#!/usr/bin/env bash
# Hostile configuration (issue 8, items 3, 4, 5, 10): a FIFO where a file belongs is exit 2 at
# once (it used to hang in open()); api_url is validated whole (port 99999 is exit 2 naming
# file:line:key, not exit 1 later); a key pasted where api_key_file belongs is not printed
# back; an ESC byte in a key name prints as \x1b; a key file's surrounding blanks are dropped
# and a second line is refused.
. "$(dirname "$0")/lib.sh"

start_fake --agents 3
write_config good
mkfifo "$WORK/fifo"

# -c, api_key_file and api_ca_file naming a FIFO: exit 2 within the timeout, not a hang.
expect_status 2 timeout 10 "$TSGRAPHD" -c "$WORK/fifo" check
expect_output "$WORK/fifo: not a regular file (a FIFO, device or directory?)"
expect_status 2 timeout 10 "$TSGRAPHD" -c "$WORK/fifo" status
sed "s#^api_key_file = .*#api_key_file = $WORK/fifo#" "$WORK/good.conf" >"$WORK/fifokey.conf"
expect_status 2 timeout 10 "$TSGRAPHD" -c "$WORK/fifokey.conf" check
expect_output "fifokey.conf:5: api_key_file: the file it names is not a regular file"
printf 'api_ca_file = %s\n' "$WORK/fifo" >"$WORK/ca.line"
sed "/^api_url/r $WORK/ca.line" "$WORK/good.conf" >"$WORK/fifoca.conf"
expect_status 2 timeout 10 "$TSGRAPHD" -c "$WORK/fifoca.conf" sync --dry-run
expect_output "fifoca.conf:7: api_ca_file: $WORK/fifo: not a regular file"
expect_status 2 timeout 10 "$TSGRAPHD" -c /dev/zero check
expect_output "/dev/zero: not a regular file"

# api_url validated whole: exit 2 with file:line: key: reason.
for url in "https://api.threatstack.com:99999" "https://api.threatstack.com:0" "https://:443"; do
	sed "s#^api_url = .*#api_url = $url#" "$WORK/good.conf" >"$WORK/port.conf"
	expect_status 2 "$TSGRAPHD" -c "$WORK/port.conf" check
	expect_output "port.conf:6: api_url: "
done
expect_output "port.conf:6: api_url: the host is empty"
sed "s#^api_url = .*#api_url = https://api.threatstack.com:99999#" "$WORK/good.conf" >"$WORK/port.conf"
expect_status 2 "$TSGRAPHD" -c "$WORK/port.conf" sync
expect_output "port.conf:6: api_url: the port must be a number from 1 to 65535"

# The key itself pasted where its file name belongs: refused, never printed.
sed "s#^api_key_file = .*#api_key_file = $FAKE_KEY#" "$WORK/good.conf" >"$WORK/pasted.conf"
expect_status 2 "$TSGRAPHD" -c "$WORK/pasted.conf" check
expect_output "pasted.conf:5: api_key_file: cannot open the file it names"
expect_no_output "$FAKE_KEY"
expect_no_output "${FAKE_KEY:0:12}"

# Raw bytes from the file are escaped: an ESC in a key name prints as \x1b.
cp "$WORK/good.conf" "$WORK/esc.conf"
printf 'ti\033[2Jmeout = 5\n' >>"$WORK/esc.conf"
expect_status 2 "$TSGRAPHD" -c "$WORK/esc.conf" check
expect_output 'esc.conf:14: ti\x1b[2Jmeout: unknown key in [sink.*]'
case "$OUT" in *$'\033'*) fail "a raw ESC byte reached the output" ;; esac

# A key file with blanks around the key works; one with a second line is refused.
printf '  \t%s  \r\n\n' "$FAKE_KEY" >"$WORK/api.key"
expect_status 0 "$TSGRAPHD" -c "$WORK/good.conf" check
expect_output "credentials OK"
printf '%s\nsecond-line\n' "$FAKE_KEY" >"$WORK/api.key"
expect_status 2 "$TSGRAPHD" -c "$WORK/good.conf" check
expect_output "good.conf:5: api_key_file: the file holds more than one line (one secret, on one line)"
expect_no_output "$FAKE_KEY"
echo "ok"
