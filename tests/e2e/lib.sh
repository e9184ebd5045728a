# Shared helpers for end-to-end scenarios. Source it: `. "$(dirname "$0")/lib.sh"`.
# Gives: $TSGRAPHD, $BUILD, a private $WORK directory removed on exit, and assertions.
set -euo pipefail
BUILD=${BUILD:-build}
TSGRAPHD=${TSGRAPHD:-$PWD/$BUILD/tsgraphd}
WORK=$(mktemp -d /tmp/tsgraphd-e2e.XXXXXX)
_cleanup_hooks=()
_cleanup() {
	local h
	for h in "${_cleanup_hooks[@]}"; do eval "$h" || true; done
	rm -rf "$WORK"
}
trap _cleanup EXIT
on_exit() { _cleanup_hooks+=("$1"); }

fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_status WANT CMD...: runs CMD, captures stdout+stderr in $OUT, checks the exit status.
expect_status() {
	local want=$1; shift
	set +e
	OUT=$("$@" 2>&1)
	local got=$?
	set -e
	[ "$got" -eq "$want" ] || fail "'$*' exited $got, want $want; output: $OUT"
}
expect_output() { # substring
	case "$OUT" in *"$1"*) ;; *) fail "output lacks '$1'; output: $OUT" ;; esac
}
expect_no_output() { # substring
	case "$OUT" in *"$1"*) fail "output has '$1'; output: $OUT" ;; *) ;; esac
}
