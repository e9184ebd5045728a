#!/usr/bin/env bash
# Valid UTF-8 out, whatever comes in (issue 8 item 7). The API serves tag values with a raw
# 0xff, a truncated sequence, an overlong, UTF-16 surrogate bytes, a code point above
# U+10FFFF; the config's org_name has a raw 0xff. Every byte of the change log and of the
# stored graph is valid UTF-8, each bad sequence is U+FFFD, and a second sync changes nothing
# (the repair is the same every time, so the hashes are). A lone "\ud800" escape and
# "\u0000" cannot reach tsgraphd through the fake (its own json-c decodes the escape to U+FFFD
# and its strings end at a NUL): tests/unit/test_canon.c parses those as the client does.
. "$(dirname "$0")/lib.sh"

# valid_utf8 FILE: every byte sequence is well-formed UTF-8 (RFC 3629; no surrogates, no
# overlongs, nothing above U+10FFFF) and there is no NUL.
valid_utf8() {
	perl -0777 -ne 'exit(/\A(?:[\x01-\x7F]|[\xC2-\xDF][\x80-\xBF]|\xE0[\xA0-\xBF][\x80-\xBF]|[\xE1-\xEC\xEE\xEF][\x80-\xBF]{2}|\xED[\x80-\x9F][\x80-\xBF]|\xF0[\x90-\xBF][\x80-\xBF]{2}|[\xF1-\xF3][\x80-\xBF]{3}|\xF4[\x80-\x8F][\x80-\xBF]{2})*\z/ ? 0 : 1)' "$1" ||
		fail "$1 is not valid UTF-8: $(LC_ALL=C.UTF-8 grep -naxv '.*' "$1" | head -3 | cut -c1-200)"
}

start_fake --agents 12 --cves 4 --alerts 5 --seed 71 --page-size 5
write_config a
# org_name with a raw 0xff byte.
sed -i "s/^org_name = .*/org_name = Acme $(printf '\xff') Corp/" "$WORK/a.conf"
log=$WORK/a.ndjson

agent=$(fake_truth | jq -r '.agents[0].id')
# tag KEY VALUE-BYTES: the raw bytes go into the control request as they are.
tag() {
	printf '{"op":"tag_set","id":"%s","key":"%s","value":"%s"}' "$agent" "$1" "$2" |
		curl -sS -f --max-time 10 --data-binary @- "$FAKE_URL/_fake/fleet" >/dev/null
}
tag raw "a$(printf '\xff')b"
tag truncated "x$(printf '\xe2\x82')"
tag overlong "$(printf '\xc0\xaf')/"
tag surrogate "$(printf '\xed\xa0\x80')s"
tag above "$(printf '\xf4\x90\x80\x80')"
# The fake really serves the bad bytes (the test would prove nothing otherwise).
fake_truth >"$WORK/truth.json"
if LC_ALL=C grep -q "$(printf '\xc0\xaf')" "$WORK/truth.json"; then :; else
	fail "the fake does not serve the raw bytes"
fi

expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
valid_utf8 "$log"
sqlite3 "$WORK/a.db" 'SELECT json FROM object' >"$WORK/stored.txt"
valid_utf8 "$WORK/stored.txt"

R=$(printf '\xef\xbf\xbd')
akey=threatstack:agent:$agent
# want PROPERTY EXPECTED: the agent's property in the change log.
want() {
	local got
	got=$(jq -r --arg k "$akey" --arg p "$1" 'select(.key == $k) | .object[$p]' "$log")
	[ "$got" = "$2" ] || fail "$1: got '$got', want '$2'"
}
want tag.raw "a${R}b"
want tag.truncated "x${R}"
want tag.overlong "${R}${R}/"
want tag.surrogate "${R}${R}${R}s"
want tag.above "${R}${R}${R}${R}"
name=$(jq -r 'select(.type == "threatstack_account") | .object.name' "$log")
[ "$name" = "Acme $R Corp" ] || fail "org_name: got '$name'"

# The same bytes again: the same hashes, no change.
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "sync: 0 created, 0 updated, 0 deleted"
echo "valid UTF-8 out ($(count_lines "$log") changes)"
