#!/usr/bin/env bash
# The systemd units: `systemd-analyze verify` finds nothing to say about tsgraphd.service,
# tsgraphd@.service (as an instance) and tsgraphd.socket, and `systemd-analyze security
# --offline=true` rates each service's exposure at 2.0 or lower. ExecStart is pointed at the
# binary under test (verify wants it to exist). No systemd as PID 1 is needed.
. "$(dirname "$0")/lib.sh"

command -v systemd-analyze >/dev/null 2>&1 || { echo "SKIP: systemd-analyze is missing (apt-get install systemd)"; exit 0; }

units=$WORK/units
mkdir -p "$units"
for f in tsgraphd.service tsgraphd@.service tsgraphd.socket; do
	sed "s|^ExecStart=/usr/local/bin/tsgraphd |ExecStart=$TSGRAPHD |" "systemd/$f" >"$units/$f"
done
grep -q "^ExecStart=$TSGRAPHD " "$units/tsgraphd.service" || fail "ExecStart no longer names /usr/local/bin/tsgraphd (make install rewrites that path)"
cp "$units/tsgraphd@.service" "$units/tsgraphd@acme.service"

out=$(cd "$units" && systemd-analyze verify --man=no ./tsgraphd.service ./tsgraphd.socket ./tsgraphd@acme.service 2>&1) ||
	fail "systemd-analyze verify failed: $out"
[ -z "$out" ] || fail "systemd-analyze verify is not clean: $out"

for u in tsgraphd.service tsgraphd@acme.service; do
	line=$(cd "$units" && systemd-analyze security --offline=true "./$u" 2>&1 | grep 'Overall exposure level') ||
		fail "no exposure figure for $u"
	figure=$(printf '%s\n' "$line" | sed -n 's/.*: \([0-9][0-9.]*\) .*/\1/p')
	[ -n "$figure" ] || fail "cannot read the exposure figure of $u: $line"
	awk -v f="$figure" 'BEGIN { exit !(f <= 2.0) }' || fail "$u: exposure $figure, want 2.0 or lower"
	echo "units: $u exposure $figure (systemd-analyze security --offline=true)"
done
echo "units: systemd-analyze verify clean on tsgraphd.service, tsgraphd@acme.service, tsgraphd.socket"
