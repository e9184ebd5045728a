# Shared by the benchmark scripts (source it after tests/e2e/lib.sh). Besides the Markdown
# each script prints, its key figures go as KEY=VALUE lines (one a line, the value to the end
# of the line) into the file $BENCH_OUT when it is set: `make bench` collects them and
# tests/bench/summary.sh turns them into one table. Keys are dotted and start with the
# script's name (sync., push., receiver., latency., ratelimit.); a later line for the same
# key wins.

# bench_out KEY VALUE
bench_out() {
	[ -n "${BENCH_OUT:-}" ] || return 0
	case $1$2 in *$'\n'*) fail "bench_out $1: a value on more than one line" ;; esac
	printf '%s=%s\n' "$1" "$2" >>"$BENCH_OUT"
}
