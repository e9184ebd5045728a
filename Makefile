# tsgraphd — build, test, install.
#
# Every library is found with pkg-config. Sources are picked up by wildcard:
#   src/*.c              the daemon's modules; src/main.c alone makes the binary
#                        ($(BUILD)/tsgraphd-test: the same, every module compiled again with
#                        -DTSGRAPHD_TEST_HOOKS into $(BUILD)/obj-hooks: the pause and crash
#                        points of include/tsgraphd/testhook.h; never installed)
#   tests/unit/test_*.c  one cmocka binary each, linked with the modules
#   tests/server/*.c     fake servers (fake Threat Stack, ...), one binary each
#   tests/lib/*.c        helpers shared by the tests
#   tests/e2e/NNN-*.sh   end-to-end scenarios against the fake servers
# BUILD selects the output directory, so several builds (plain, asan) live side by side.

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
UNITDIR    ?= $(PREFIX)/lib/systemd/system
DOCDIR     ?= $(PREFIX)/share/doc/tsgraphd
MANDIR     ?= $(PREFIX)/share/man
DESTDIR    ?=

BUILD      ?= build
VERSION    := 0.1.0

CC         ?= cc
V          ?= 0
Q          := $(if $(filter 1,$(V)),,@)
PKGS       := libmicrohttpd libcurl libcrypto json-c libsystemd sqlite3
TEST_PKGS  := cmocka
# The fake servers' own libraries (fake_jupiterone inflates gzip bodies).
SERVER_PKGS := zlib

# Debian packages `make deps` installs when missing (build, tests, lint).
DEB_PKGS   := gcc make pkg-config libmicrohttpd-dev libcurl4-openssl-dev libssl-dev \
              libjson-c-dev libsystemd-dev libsqlite3-dev libcmocka-dev zlib1g-dev sqlite3 \
              valgrind clang-format nodejs node-hawk curl jq time bc openssl systemd

WARN       := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes \
              -Wmissing-prototypes -Wvla -Wpointer-arith -Wundef $(if $(findstring clang,$(CC)),,-Wno-format-truncation)
HARDEN     := -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIE
OPT        ?= -O2 -g
SAN        ?=
CFLAGS     ?=
LDFLAGS    ?=

# Lazy (=) so that the flags are read after `deps` has installed the libraries.
PKG_CFLAGS  = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS    = $(shell pkg-config --libs $(PKGS))
TEST_CFLAGS = $(shell pkg-config --cflags $(TEST_PKGS))
TEST_LIBS   = $(shell pkg-config --libs $(TEST_PKGS))
SERVER_LIBS = $(shell pkg-config --libs $(SERVER_PKGS))

ALL_CFLAGS  = -std=c11 -D_GNU_SOURCE -DTSGRAPHD_VERSION='"$(VERSION)"' -Iinclude \
              $(WARN) $(HARDEN) $(OPT) $(SAN) $(PKG_CFLAGS) $(CFLAGS)
ALL_LDFLAGS = -pie -Wl,-z,relro,-z,now $(SAN) $(LDFLAGS)

LIB_SRC    := $(filter-out src/main.c,$(wildcard src/*.c))
LIB_OBJ    := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o)
HOOK_OBJ   := $(wildcard src/*.c)
HOOK_OBJ   := $(HOOK_OBJ:src/%.c=$(BUILD)/obj-hooks/%.o)
TLIB_SRC   := $(wildcard tests/lib/*.c)
TLIB_OBJ   := $(TLIB_SRC:tests/lib/%.c=$(BUILD)/obj/tlib_%.o)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
SERVER_SRC := $(wildcard tests/server/*.c)
SERVER_BIN := $(SERVER_SRC:tests/server/%.c=$(BUILD)/%)
BENCH_SRC  := $(wildcard tests/bench/*.c)
BENCH_BIN  := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
HEADERS    := $(wildcard include/tsgraphd/*.h tests/lib/*.h)

.PHONY: all check test demo asan valgrind bench install uninstall clean deps lint fuzz help drills
.DEFAULT_GOAL := all

all: $(BUILD)/tsgraphd $(SERVER_BIN)

help:
	@echo "targets: all demo check asan valgrind bench install uninstall clean deps lint fuzz drills"
	@echo "  make demo           install missing packages, build, run the daemon against a"
	@echo "                      changing fake fleet and show its changes (Ctrl-C stops;"
	@echo "                      DEMO_SECONDS=N ends it after N seconds)"
	@echo "  make check          install missing packages, build, run every test"
	@echo "  make asan           every test under AddressSanitizer + UBSan"
	@echo "  make drills         the fault drills (kill -9 rounds, outages, storms, disk full,"
	@echo "                      a locked store; about 6 minutes; DRILLS=PATTERN picks some)"
	@echo "  make bench          the benchmarks (about 25 minutes): one summary table, also"
	@echo "                      written into docs/benchmarks.md"
	@echo "  make fuzz           every libFuzzer target for FUZZ_SECONDS (60) each; FUZZ_TARGETS,"
	@echo "                      FUZZ_RUNS, FUZZ_MERGE=1 (docs/testing.md)"
	@echo "  make install PREFIX=/usr DESTDIR=/tmp/root"

$(BUILD)/obj/%.o: src/%.c $(HEADERS) | $(BUILD)/obj
	@echo "  CC      $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/obj/tlib_%.o: tests/lib/%.c $(HEADERS) | $(BUILD)/obj
	@echo "  CC      $<"
	$(Q)$(CC) $(ALL_CFLAGS) $(TEST_CFLAGS) -Itests/lib -c -o $@ $<

$(BUILD)/libtsgraphd.a: $(LIB_OBJ)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

# The test helpers as an archive: a binary links only the helpers it calls (the fake
# servers need none of the cmocka-based ones).
$(BUILD)/libtests.a: $(TLIB_OBJ)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $^

$(BUILD)/tsgraphd: $(BUILD)/obj/main.o $(BUILD)/libtsgraphd.a
	@echo "  LD      $@"
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

# The daemon with the test hooks compiled in (include/tsgraphd/testhook.h): every module,
# main included, built again with -DTSGRAPHD_TEST_HOOKS, so no object of the plain build (and
# nothing of the hooks in it) is shared with the installed binary.
$(BUILD)/obj-hooks/%.o: src/%.c $(HEADERS) | $(BUILD)/obj-hooks
	@echo "  CC      $< (test hooks)"
	$(Q)$(CC) $(ALL_CFLAGS) -DTSGRAPHD_TEST_HOOKS -c -o $@ $<

$(BUILD)/tsgraphd-test: $(HOOK_OBJ)
	@echo "  LD      $@"
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/test_%: tests/unit/test_%.c $(BUILD)/libtsgraphd.a $(BUILD)/libtests.a $(HEADERS) | $(BUILD)/tests
	@echo "  CCLD    $@"
	$(Q)$(CC) $(ALL_CFLAGS) $(TEST_CFLAGS) -Itests/lib -o $@ $< $(BUILD)/libtests.a \
		$(BUILD)/libtsgraphd.a $(ALL_LDFLAGS) $(PKG_LIBS) $(TEST_LIBS)

$(BUILD)/%: tests/server/%.c $(BUILD)/libtsgraphd.a $(BUILD)/libtests.a $(HEADERS)
	@echo "  CCLD    $@"
	$(Q)$(CC) $(ALL_CFLAGS) -Itests/lib -o $@ $< $(BUILD)/libtests.a $(BUILD)/libtsgraphd.a \
		$(ALL_LDFLAGS) $(PKG_LIBS) $(SERVER_LIBS)

$(BUILD)/bench/%: tests/bench/%.c | $(BUILD)/bench
	@echo "  CCLD    $@"
	$(Q)$(CC) $(ALL_CFLAGS) -o $@ $< $(ALL_LDFLAGS) $(PKG_LIBS)

$(BUILD)/obj $(BUILD)/obj-hooks $(BUILD)/tests $(BUILD)/bench:
	mkdir -p $@

# `check` first installs what is missing, then builds and tests in a sub-make so that
# pkg-config sees the freshly installed libraries.
check: deps
	@$(MAKE) --no-print-directory test

# `demo` likewise: its packages, then the build in a sub-make, then tests/demo/demo.sh (the
# daemon and the fake Threat Stack on loopback, everything in a private temporary directory,
# all stopped and removed on Ctrl-C or after DEMO_SECONDS). Its packages are only what the
# build (the fake servers' helpers include cmocka.h) and the demo need, not the test tools.
DEMO_DEB_PKGS := gcc make pkg-config libmicrohttpd-dev libcurl4-openssl-dev libssl-dev \
              libjson-c-dev libsystemd-dev libsqlite3-dev libcmocka-dev zlib1g-dev curl jq openssl
demo:
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(DEMO_DEB_PKGS)"
	@$(MAKE) --no-print-directory all
	@BUILD=$(BUILD) tests/demo/demo.sh

test: all $(BUILD)/tsgraphd-test $(UNIT_BIN) lint
	@BUILD=$(BUILD) tests/run-tests.sh

asan: deps
	@$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g" \
		SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		HARDEN="-fPIE" all build/asan/tsgraphd-test $(UNIT_BIN:$(BUILD)/%=build/asan/%)
	@BUILD=build/asan ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 tests/run-tests.sh

# Benchmarks (not tests). Each script prints its Markdown tables and appends its key figures
# to $(BENCH_OUT) (KEY=VALUE lines); tests/bench/summary.sh --begin records the machine, date
# and commit there first, and at the end prints one table of the run and writes it into
# docs/benchmarks.md between <!-- bench:begin --> and <!-- bench:end -->. The receiver's
# benchmark compares it with wrk against the Debian `webhook` package and nginx: installed
# when missing, by `bench` only (`check` does not need them). bench-ratelimit.sh takes about
# 3.5 minutes whatever the machine (it runs at Threat Stack's 200 requests a minute).
BENCH_DEB_PKGS := wrk webhook nginx-light iproute2
BENCH_OUT ?= $(BUILD)/bench/results.txt
BENCH_SYNC_SIZES ?= 1000 10000 100000
BENCH_PUSH_AGENTS ?= 10000
BENCH_ENV = BUILD=$(BUILD) TSGRAPHD=$(CURDIR)/$(BUILD)/tsgraphd BENCH_OUT=$(abspath $(BENCH_OUT))
# The CPU-bound benchmarks first (the receiver's throughput, the syncs' CPU), the one bound
# by the API's rate limit (minutes of waiting) last.
bench: deps
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(BENCH_DEB_PKGS)"
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory $(BENCH_BIN)
	@CC="$(CC)" OPT="$(OPT)" tests/bench/summary.sh --begin $(BENCH_OUT)
	@$(BENCH_ENV) tests/bench/bench-receiver.sh
	@echo
	@$(BENCH_ENV) tests/bench/bench-sync.sh $(BENCH_SYNC_SIZES)
	@echo
	@$(BENCH_ENV) tests/bench/bench-push.sh $(BENCH_PUSH_AGENTS)
	@echo
	@$(BENCH_ENV) tests/bench/bench-ratelimit.sh
	@echo
	@tests/bench/summary.sh --doc docs/benchmarks.md $(BENCH_OUT)

# The fault drills (tests/drills/NN-*.sh, docs/testing.md): minutes long, so not part of
# `check`. Like `check`: the packages, then the build in a sub-make, then the drills, each
# under its time bound; DRILLS=PATTERN runs the drills whose name holds it, DRILL_SEED=N
# replays a run's random choices.
DRILLS ?=
drills: deps
	@$(MAKE) --no-print-directory all $(BUILD)/tsgraphd-test
	@BUILD=$(BUILD) tests/drills/run-drills.sh $(DRILLS)

valgrind: all $(UNIT_BIN)
	@VALGRIND=1 tests/run-tests.sh unit/

# Coverage-guided fuzzing with clang's libFuzzer: each tests/fuzz/fuzz_NAME.c runs for
# FUZZ_SECONDS (and at most FUZZ_RUNS executions when set) from tests/fuzz/corpus/NAME/, with
# tests/fuzz/NAME.dict when there is one. Not part of `check` (it is open-ended).
# FUZZ_TARGETS picks some (`make fuzz FUZZ_TARGETS=config`); clang and its runtime are
# installed when missing. New inputs go to build/fuzz/corpus-NAME; FUZZ_MERGE=1 then merges
# those that add coverage into tests/fuzz/corpus/NAME (libFuzzer's -merge=1). The end prints
# one line per target (executions, exec/s, cov, crashes); any crash, leak, sanitizer report
# or timeout fails `make fuzz` and leaves its input in build/fuzz/crash-* (leak-*, timeout-*).
FUZZ_SECONDS ?= 60
FUZZ_RUNS    ?=
FUZZ_MERGE   ?=
FUZZ_TARGETS ?= $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_DEB_PKGS := clang libclang-rt-14-dev
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
fuzz: deps
	@$(MAKE) --no-print-directory deps DEB_PKGS="$(FUZZ_DEB_PKGS)"
	@$(MAKE) --no-print-directory BUILD=build/fuzz CC=clang OPT="-O1 -g" HARDEN= \
		SAN="-fsanitize=fuzzer-no-link $(FUZZ_SAN)" build/fuzz/libtsgraphd.a
	@rm -f build/fuzz/summary; status=0; \
	for n in $(FUZZ_TARGETS); do \
		f=tests/fuzz/fuzz_$$n.c; \
		[ -f $$f ] || { echo "fuzz: no $$f" >&2; exit 1; }; \
		clang -std=c11 -D_GNU_SOURCE -Iinclude $(PKG_CFLAGS) -g -O1 -fsanitize=fuzzer \
			$(FUZZ_SAN) -o build/fuzz/fuzz_$$n $$f build/fuzz/libtsgraphd.a \
			$(PKG_LIBS) || exit 1; \
		mkdir -p build/fuzz/corpus-$$n; \
		dict=; [ -f tests/fuzz/$$n.dict ] && dict=-dict=tests/fuzz/$$n.dict; \
		runs=; [ -n "$(FUZZ_RUNS)" ] && runs=-runs=$(FUZZ_RUNS); \
		echo "fuzz: $$n for $(FUZZ_SECONDS)s$${runs:+ or $(FUZZ_RUNS) runs}"; \
		build/fuzz/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) $$runs -max_len=8192 \
			-timeout=25 -rss_limit_mb=2048 -print_final_stats=1 $$dict \
			-artifact_prefix=build/fuzz/ build/fuzz/corpus-$$n tests/fuzz/corpus/$$n \
			>build/fuzz/$$n.log 2>&1; \
		rc=$$?; \
		grep -E '^#[0-9]+[[:space:]]+DONE|^Done ' build/fuzz/$$n.log; \
		runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' build/fuzz/$$n.log | tail -n 1); \
		secs=$$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' build/fuzz/$$n.log | tail -n 1); \
		speed=$$(sed -n 's/^stat::average_exec_per_sec: *//p' build/fuzz/$$n.log | tail -n 1); \
		cov=$$(grep -o 'cov: [0-9]*' build/fuzz/$$n.log | tail -n 1 | cut -d' ' -f2); \
		crashes=0; [ $$rc -eq 0 ] || { crashes=1; status=1; \
			grep -E '^==[0-9]+== ?ERROR|^SUMMARY|runtime error|Test unit written to' build/fuzz/$$n.log | head -n 4; }; \
		if [ $$rc -eq 0 ] && [ -n "$(FUZZ_MERGE)" ]; then \
			build/fuzz/fuzz_$$n -merge=1 -use_counters=0 -max_len=8192 $$dict tests/fuzz/corpus/$$n \
				build/fuzz/corpus-$$n >build/fuzz/$$n.merge.log 2>&1 || exit 1; \
			echo "fuzz: $$n merged: $$(grep -o 'MERGE-OUTER: [0-9]* new files.*' build/fuzz/$$n.merge.log)"; \
		fi; \
		printf 'fuzz %-14s %10s executions in %4ss (%s/s), cov %s, crashes %s%s\n' $$n \
			"$${runs:-?}" "$${secs:-?}" "$${speed:-?}" "$${cov:-?}" $$crashes \
			"$$( [ $$rc -eq 0 ] || echo " (exit $$rc, see build/fuzz/$$n.log)")" \
			>>build/fuzz/summary; \
	done; \
	echo; cat build/fuzz/summary; exit $$status

# The fuzz targets are built by clang in `make fuzz` only: here they are at least compiled
# (no link), so an API change cannot break them unnoticed.
lint:
	@tests/lint.sh
	@for f in $(FUZZ_SRC); do $(CC) $(ALL_CFLAGS) -fsyntax-only $$f || exit 1; done

deps:
	@missing=""; \
	for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || missing="$$missing $$p"; \
	done; \
	case " $(DEB_PKGS) " in *" nodejs "*) command -v npm >/dev/null 2>&1 || missing="$$missing npm" ;; esac; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
		$$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

install: $(BUILD)/tsgraphd
	install -Dm0755 $(BUILD)/tsgraphd $(DESTDIR)$(BINDIR)/tsgraphd
	install -Dm0640 conf/tsgraphd.conf.example $(DESTDIR)$(SYSCONFDIR)/tsgraphd/tsgraphd.conf.example
	install -Dm0644 docs/tsgraphd.8 $(DESTDIR)$(MANDIR)/man8/tsgraphd.8
	install -d $(DESTDIR)$(UNITDIR)
	for f in tsgraphd.service tsgraphd@.service; do \
		sed 's|^ExecStart=/usr/local/bin/tsgraphd |ExecStart=$(BINDIR)/tsgraphd |' systemd/$$f \
			>$(DESTDIR)$(UNITDIR)/$$f && chmod 0644 $(DESTDIR)$(UNITDIR)/$$f || exit 1; \
	done
	install -m0644 systemd/tsgraphd.socket $(DESTDIR)$(UNITDIR)/tsgraphd.socket
	install -Dm0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	for f in docs/*.md; do install -Dm0644 $$f $(DESTDIR)$(DOCDIR)/$$(basename $$f); done

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/tsgraphd $(DESTDIR)$(SYSCONFDIR)/tsgraphd/tsgraphd.conf.example \
		$(DESTDIR)$(MANDIR)/man8/tsgraphd.8 $(DESTDIR)$(UNITDIR)/tsgraphd.service \
		$(DESTDIR)$(UNITDIR)/tsgraphd@.service $(DESTDIR)$(UNITDIR)/tsgraphd.socket
	rm -rf $(DESTDIR)$(DOCDIR)

clean:
	rm -rf build
