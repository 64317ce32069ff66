# postern: build, test and run. See README.md.
#
#   make deps    install Debian packages and build wolfSSL into deps/
#   make         build/postern (optimized)
#   make run     deps, build, dev PKI, run on conf/postern.yaml
#   make test    deps, lint, layers, ASan build, unit and integration tests, then
#                the reload and shutdown tests on a TSan build (make tsan)
#   make lint    fail when clang-format would change a source (make format)
#   make fuzz    build the libFuzzer targets (tests/fuzz) and run each
#                FUZZ_SECONDS (default 60) from its seeds; make fuzz-smoke
#                runs each briefly (part of make test)
#   make install PREFIX=/usr/local DESTDIR=   binary, man pages, unit, logrotate,
#                example config (make uninstall removes them)

CC ?= cc
WOLFSSL := deps/wolfssl
WOLFSSL_LIB := $(WOLFSSL)/lib/libwolfssl.a
LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp
PYTHON := /usr/bin/python3

WARN := -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes -Wshadow \
        -Wno-unused-parameter
CPPFLAGS := -D_GNU_SOURCE -Iinclude -I$(WOLFSSL)/include -I$(LLHTTP_INC)
BASE_CFLAGS := -std=c11 -g -pthread -fno-strict-aliasing
OPT_CFLAGS := -O2
SAN_CFLAGS := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDLIBS := $(WOLFSSL_LIB) -luv -lnghttp2 -lyaml -lhiredis -lm -lpthread

SRCS := $(wildcard src/*.c)
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
LLHTTP_SRCS := llhttp.c api.c http.c
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
HDRS := $(wildcard include/postern/*.h src/*.h)

OPT_DIR := build/opt
SAN_DIR := build/asan
TSAN_DIR := build/tsan

opt_objs = $(patsubst src/%.c,$(OPT_DIR)/%.o,$(1))
san_objs = $(patsubst src/%.c,$(SAN_DIR)/%.o,$(1))
LLHTTP_OPT := $(addprefix $(OPT_DIR)/llhttp/,$(LLHTTP_SRCS:.c=.o))
LLHTTP_SAN := $(addprefix $(SAN_DIR)/llhttp/,$(LLHTTP_SRCS:.c=.o))
UNIT_BINS := $(patsubst tests/unit/%.c,$(SAN_DIR)/%,$(UNIT_SRCS))
tsan_objs = $(patsubst src/%.c,$(TSAN_DIR)/%.o,$(1))
LLHTTP_TSAN := $(addprefix $(TSAN_DIR)/llhttp/,$(LLHTTP_SRCS:.c=.o))

.PHONY: all deps packages run test unit integration asan tsan pki check format lint layers clean \
        distclean bench fuzz fuzz-build fuzz-smoke install uninstall
all: build/postern

deps:
	.ci/deps.sh all

packages:
	.ci/deps.sh packages

$(WOLFSSL_LIB):
	.ci/deps.sh wolfssl

# Optimized build. Objects depend on the wolfSSL archive, not only on its
# existence: a rebuild with other flags changes wolfssl/options.h and with it
# the layout of wolfSSL's structures.
$(OPT_DIR)/%.o: src/%.c $(HDRS) $(WOLFSSL_LIB)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(BASE_CFLAGS) $(OPT_CFLAGS) $(WARN) -c $< -o $@
$(OPT_DIR)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(@D)
	$(CC) -I$(LLHTTP_INC) $(BASE_CFLAGS) $(OPT_CFLAGS) -c $< -o $@
build/postern: $(call opt_objs,$(SRCS)) $(LLHTTP_OPT) $(WOLFSSL_LIB) $(OPT_DIR)/srcs.list
	$(CC) $(BASE_CFLAGS) -o $@ $(call opt_objs,$(SRCS)) $(LLHTTP_OPT) $(LDLIBS)

# Sanitizer build (ASan + UBSan), used by every test.
$(SAN_DIR)/%.o: src/%.c $(HDRS) $(WOLFSSL_LIB)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(BASE_CFLAGS) $(SAN_CFLAGS) $(WARN) -c $< -o $@
$(SAN_DIR)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(@D)
	$(CC) -I$(LLHTTP_INC) $(BASE_CFLAGS) $(SAN_CFLAGS) -c $< -o $@
# The list of sources, rewritten only when it changes: a deleted source must
# rebuild the archive and the binary, or its stale object would stay in.
.PHONY: FORCE
build/%/srcs.list: FORCE
	@mkdir -p $(@D); echo '$(SRCS)' | cmp -s - $@ || echo '$(SRCS)' > $@
$(SAN_DIR)/libpostern.a: $(call san_objs,$(LIB_SRCS)) $(LLHTTP_SAN) $(SAN_DIR)/srcs.list
	rm -f $@ && ar rcs $@ $(filter %.o,$^)
$(SAN_DIR)/postern: $(SAN_DIR)/main.o $(SAN_DIR)/libpostern.a $(WOLFSSL_LIB)
	$(CC) $(BASE_CFLAGS) $(SAN_CFLAGS) -o $@ $(SAN_DIR)/main.o $(SAN_DIR)/libpostern.a $(LDLIBS)
# test_h2 fakes the stream API and the access log (the test plays the
# backend), and the connection as a pst_host_t of its own. It links the
# objects h2.c needs, not libpostern.a, and none of stream.o, pool.o or
# access_log.o, so that a fake duplicating a real definition is a link
# error rather than a choice made by link order. An explicit rule: it takes
# precedence over the pattern rule below.
TEST_h2_OBJS := $(call san_objs,src/h2.c src/h2_req.c src/h2_limits.c src/h2_mem.c src/http_msg.c src/buf.c src/fl.c src/log.c \
                  src/metrics.c src/error.c)
$(SAN_DIR)/test_h2: tests/unit/test_h2.c $(TEST_h2_OBJS) $(HDRS) $(wildcard tests/unit/*.h)
	$(CC) $(CPPFLAGS) $(BASE_CFLAGS) $(SAN_CFLAGS) $(WARN) -Wno-missing-prototypes \
	  -o $@ $< $(TEST_h2_OBJS) $(LDLIBS) -lcmocka
$(SAN_DIR)/test_%: tests/unit/test_%.c $(SAN_DIR)/libpostern.a $(HDRS) $(wildcard tests/unit/*.h)
	$(CC) $(CPPFLAGS) $(BASE_CFLAGS) $(SAN_CFLAGS) $(WARN) -Wno-missing-prototypes \
	  -o $@ $< $(SAN_DIR)/libpostern.a $(LDLIBS) -lcmocka
asan: $(SAN_DIR)/postern

# ThreadSanitizer build, for the tests whose work crosses threads (make tsan).
# wolfSSL (deps/) and libuv (Debian's) are not instrumented: TSan sees their
# locks and threads through its interceptors, not their memory accesses;
# tests/tsan.supp says what that leaves for TSan to get wrong.
TSAN_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
$(TSAN_DIR)/%.o: src/%.c $(HDRS) $(WOLFSSL_LIB)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(BASE_CFLAGS) $(TSAN_CFLAGS) $(WARN) -c $< -o $@
$(TSAN_DIR)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(@D)
	$(CC) -I$(LLHTTP_INC) $(BASE_CFLAGS) $(TSAN_CFLAGS) -c $< -o $@
$(TSAN_DIR)/postern: $(call tsan_objs,$(SRCS)) $(LLHTTP_TSAN) $(WOLFSSL_LIB) $(TSAN_DIR)/srcs.list
	$(CC) $(BASE_CFLAGS) $(TSAN_CFLAGS) -o $@ $(call tsan_objs,$(SRCS)) $(LLHTTP_TSAN) $(LDLIBS)

export ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=0:halt_on_error=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS ?= suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done

# build/postern too: the memory-return test measures glibc's allocator, which
# ASan replaces.
integration: $(SAN_DIR)/postern build/postern
	POSTERN_BIN=$(CURDIR)/$(SAN_DIR)/postern POSTERN_OPT_BIN=$(CURDIR)/build/postern $(PYTHON) -m pytest -p no:cacheprovider -q -ra $(PYTEST_ARGS) tests/integration

# The reload, shutdown and admin tests on the TSan build: a generation is
# built off the loops and swapped in while the workers run; shutdown stops
# every loop; a scrape reads the workers' counters from the main thread.
# halt_on_error=0: postern runs on and exits with 66 after a report, which
# the tests' exit check catches along with the report in its stderr.
TSAN_TESTS := tests/integration/test_reload.py tests/integration/test_shutdown.py \
              tests/integration/test_admin.py
tsan: $(TSAN_DIR)/postern
	TSAN_OPTIONS="halt_on_error=0 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp $(TSAN_OPTIONS)" \
	  POSTERN_BIN=$(CURDIR)/$(TSAN_DIR)/postern $(PYTHON) -m pytest -p no:cacheprovider -q -ra \
	  $(PYTEST_ARGS) $(TSAN_TESTS)

# The layering in docs/architecture.md (tests/layers.py), after the
# checker's own tests.
layers:
	$(PYTHON) -m pytest -p no:cacheprovider -q tests/tools
	$(PYTHON) tests/layers.py

test: deps
	$(MAKE) lint
	$(MAKE) layers
	$(MAKE) unit
	$(MAKE) fuzz-smoke
	$(MAKE) integration
	$(MAKE) tsan

# Development PKI for `make run`: made once, never committed.
pki: conf/dev/root.pem
conf/dev/root.pem:
	conf/mkpki.sh conf/dev

run: deps
	$(MAKE) all pki
	build/postern -c conf/postern.yaml

check: all pki
	build/postern -t -c conf/postern.yaml

# The files clang-format keeps in shape: make format rewrites them, make lint
# fails (listing them) when clang-format would change one. Both use Debian
# 12's clang-format 14 with .clang-format; another version formats otherwise.
CLANG_FORMAT ?= clang-format
FORMAT_FILES = $(wildcard src/*.c src/*.h include/postern/*.h tests/unit/*.c tests/unit/*.h \
                 tests/fuzz/*.c)
check_clang_format = $(CLANG_FORMAT) --version | grep -q 'version 14\.' || \
	{ echo "$(CLANG_FORMAT) is not clang-format 14 (make packages installs it)" >&2; exit 1; }

format:
	@$(check_clang_format)
	$(CLANG_FORMAT) -i $(FORMAT_FILES)

lint:
	@$(check_clang_format)
	@out=$$($(CLANG_FORMAT) --dry-run -Werror $(FORMAT_FILES) 2>&1); status=$$?; \
	bad=$$(printf '%s\n' "$$out" | awk -F: '/: error: code should be clang-formatted/ && !seen[$$1]++ {print $$1}'); \
	if [ -n "$$bad" ]; then \
	  echo "lint: clang-format would change $$(echo "$$bad" | wc -l) file(s) (make format fixes them):"; \
	  echo "$$bad" | sed 's/^/  /'; exit 1; \
	elif [ $$status -ne 0 ]; then printf '%s\n' "$$out" >&2; exit 1; \
	fi; echo "lint: $(words $(FORMAT_FILES)) files formatted as clang-format 14 would"

# ---- install ---------------------------------------------------------------
# make install PREFIX=/usr/local DESTDIR=/tmp/stage: the optimized binary, the
# man pages (mdoc, docs/man/), the systemd unit with this install's paths,
# the logrotate file, the reference and an example configuration. The
# example becomes $(SYSCONFDIR)/postern/postern.yaml only when there is none:
# an install never overwrites a configuration. /etc holds the unit's config
# and logrotate's file whatever the PREFIX (that is where both are read).
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/postern
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR ?= /etc
INSTALL ?= install
# What make install puts in place, relative to $(DESTDIR) (the configuration
# excepted: uninstall removes it only when it is still the example).
INSTALLED = $(SBINDIR)/postern $(MANDIR)/man8/postern.8 $(MANDIR)/man5/postern.yaml.5 \
            $(UNITDIR)/postern.service $(SYSCONFDIR)/logrotate.d/postern \
            $(DOCDIR)/config.md $(DOCDIR)/README.md $(DOCDIR)/examples/postern.yaml

install: build/postern
	$(INSTALL) -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5 \
	  $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSCONFDIR)/logrotate.d $(DESTDIR)$(DOCDIR)/examples
	$(INSTALL) -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/postern
	$(INSTALL) -m 0755 build/postern $(DESTDIR)$(SBINDIR)/postern
	$(INSTALL) -m 0644 docs/man/postern.8 $(DESTDIR)$(MANDIR)/man8/postern.8
	$(INSTALL) -m 0644 docs/man/postern.yaml.5 $(DESTDIR)$(MANDIR)/man5/postern.yaml.5
	sed -e 's|/usr/local/sbin/postern|$(SBINDIR)/postern|g' -e 's|/etc/postern/|$(SYSCONFDIR)/postern/|g' \
	  conf/postern.service > $(DESTDIR)$(UNITDIR)/postern.service.tmp
	$(INSTALL) -m 0644 $(DESTDIR)$(UNITDIR)/postern.service.tmp $(DESTDIR)$(UNITDIR)/postern.service
	rm -f $(DESTDIR)$(UNITDIR)/postern.service.tmp
	$(INSTALL) -m 0644 conf/postern.logrotate $(DESTDIR)$(SYSCONFDIR)/logrotate.d/postern
	$(INSTALL) -m 0644 docs/config.md README.md $(DESTDIR)$(DOCDIR)/
	$(INSTALL) -m 0644 conf/postern.example.yaml $(DESTDIR)$(DOCDIR)/examples/postern.yaml
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/postern/postern.yaml ]; then \
	  echo "install: keeping $(DESTDIR)$(SYSCONFDIR)/postern/postern.yaml"; \
	else \
	  $(INSTALL) -m 0640 conf/postern.example.yaml $(DESTDIR)$(SYSCONFDIR)/postern/postern.yaml; \
	  echo "install: $(DESTDIR)$(SYSCONFDIR)/postern/postern.yaml is the example: edit it"; \
	fi

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	@conf=$(DESTDIR)$(SYSCONFDIR)/postern/postern.yaml; \
	if [ -e $$conf ] && cmp -s $$conf conf/postern.example.yaml; then rm -f $$conf; \
	elif [ -e $$conf ]; then echo "uninstall: keeping $$conf (changed from the example)"; fi
	-rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSCONFDIR)/postern 2>/dev/null

clean:
	rm -rf build

distclean: clean
	rm -rf deps conf/dev

# ---- fuzzing (tests/fuzz/README.md) --------------------------------------
#   make fuzz-build   build/fuzz/<target>, one per tests/fuzz/<target>.c, with
#                     clang 14's libFuzzer, ASan and UBSan
#   make fuzz         run every target FUZZ_SECONDS seconds (default 60), one
#                     after the other, from its seeds (tests/fuzz/corpus/<target>,
#                     copied into build/fuzz/corpus-run/<target>, which keeps
#                     what the run finds); crashes go to build/fuzz/artifacts/
#                     FUZZ_TARGETS: a subset; FUZZ_ARGS: more libFuzzer flags
#   make fuzz-smoke   every seed once, then each target FUZZ_SMOKE_SECONDS (5)
#                     from a scratch copy of its seeds; fails on a crash
# The library objects are built with -fsanitize=fuzzer-no-link so that
# libFuzzer sees their coverage; only the targets link libFuzzer's main.
FUZZ_CC ?= clang
FUZZ_DIR := build/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS := -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN)
FUZZ_TARGETS ?= $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/*.c))
FUZZ_BINS := $(addprefix $(FUZZ_DIR)/,$(FUZZ_TARGETS))
FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 5
FUZZ_ARGS ?=
fuzz_objs = $(patsubst src/%.c,$(FUZZ_DIR)/obj/%.o,$(1))
LLHTTP_FUZZ := $(addprefix $(FUZZ_DIR)/obj/llhttp/,$(LLHTTP_SRCS:.c=.o))

$(FUZZ_DIR)/obj/%.o: src/%.c $(HDRS) $(WOLFSSL_LIB)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(BASE_CFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link $(WARN) -c $< -o $@
$(FUZZ_DIR)/obj/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) -I$(LLHTTP_INC) $(BASE_CFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_DIR)/libpostern.a: $(call fuzz_objs,$(LIB_SRCS)) $(LLHTTP_FUZZ) $(FUZZ_DIR)/srcs.list
	rm -f $@ && ar rcs $@ $(filter %.o,$^)
# h2_front fakes the stream API and the access log, as test_h2 does, and
# links the objects h2.c needs rather than the archive (see TEST_h2_OBJS).
FUZZ_h2_front_OBJS := $(call fuzz_objs,src/h2.c src/h2_req.c src/h2_limits.c src/h2_mem.c src/http_msg.c src/buf.c src/fl.c src/log.c \
                        src/metrics.c src/error.c)
$(FUZZ_DIR)/h2_front: tests/fuzz/h2_front.c $(FUZZ_h2_front_OBJS) $(HDRS)
	$(FUZZ_CC) $(CPPFLAGS) $(BASE_CFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(WARN) \
	  -Wno-missing-prototypes -o $@ $< $(FUZZ_h2_front_OBJS) $(LDLIBS)
$(FUZZ_DIR)/%: tests/fuzz/%.c $(FUZZ_DIR)/libpostern.a $(HDRS)
	$(FUZZ_CC) $(CPPFLAGS) $(BASE_CFLAGS) $(FUZZ_CFLAGS) -fsanitize=fuzzer $(WARN) \
	  -Wno-missing-prototypes -o $@ $< $(FUZZ_DIR)/libpostern.a $(LDLIBS) -ldl

fuzz-build: $(FUZZ_BINS)

# One target at a time: each may take every core it is given (-jobs in
# FUZZ_ARGS), and a machine shared with others gets one busy core.
# A target that fails does not stop the others; make fuzz fails at the end,
# naming it.
fuzz: fuzz-build
	@failed=; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  mkdir -p $(FUZZ_DIR)/corpus-run/$$t $(FUZZ_DIR)/artifacts; \
	  cp -n tests/fuzz/corpus/$$t/* $(FUZZ_DIR)/corpus-run/$$t/ 2>/dev/null || true; \
	  $(FUZZ_DIR)/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t- $(FUZZ_ARGS) $(FUZZ_DIR)/corpus-run/$$t \
	    || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed (see $(FUZZ_DIR)/artifacts)"; exit 1; fi

# Every seed once (the regression inputs among them), then a short run per
# target from a scratch copy of the seeds. libFuzzer exits non-zero on a
# crash, a leak or a UBSan report, which fails the target.
fuzz-smoke: fuzz-build
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "== fuzz-smoke $$t"; \
	  rm -rf $(FUZZ_DIR)/smoke/$$t; mkdir -p $(FUZZ_DIR)/smoke/$$t $(FUZZ_DIR)/artifacts; \
	  $(FUZZ_DIR)/$$t -runs=0 tests/fuzz/corpus/$$t 2>$(FUZZ_DIR)/smoke/$$t.log || \
	    { tail -40 $(FUZZ_DIR)/smoke/$$t.log; exit 1; }; \
	  cp tests/fuzz/corpus/$$t/* $(FUZZ_DIR)/smoke/$$t/; \
	  $(FUZZ_DIR)/$$t -max_total_time=$(FUZZ_SMOKE_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t- $(FUZZ_DIR)/smoke/$$t \
	    2>>$(FUZZ_DIR)/smoke/$$t.log || { tail -60 $(FUZZ_DIR)/smoke/$$t.log; exit 1; }; \
	  grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' $(FUZZ_DIR)/smoke/$$t.log | tail -2; \
	done

# ---- bench suite (bench/README.md) ----------------------------------------
#   make bench-deps   install what the bench compares with and plots with
#   make bench        build/postern (-O2, no sanitizers), the load generator and
#                     the backend, then run bench/run.py: postern's tcp and
#                     http modes against hitch and HAProxy (about 11 minutes
#                     on 2 cores; the results also go into bench/README.md).
#                     QUICK=1: one concurrency, one repetition (under a minute).
#                     PEERS=none: postern alone (or PEERS=hitch, PEERS=haproxy,
#                     PEERS=haproxy-tcp, PEERS=haproxy-http).
#                     BENCH_ARGS: more options (bench/run.py --help).
# Nothing here is a prerequisite of `make test`; its bench case builds the two
# bench programs itself and needs neither hitch nor HAProxy.
BENCH_DIR := build/bench
BENCH_PACKAGES := hitch haproxy nghttp2-client gnuplot-nox util-linux
BENCH_CFLAGS := -std=c11 -g -O2 -D_GNU_SOURCE -I$(WOLFSSL)/include $(WARN)
BENCH_TRUE = $(filter 1 yes true,$(1))

.PHONY: bench-deps bench-tools
bench-deps:
	.ci/deps.sh packages $(BENCH_PACKAGES)

bench-tools: $(BENCH_DIR)/loadgen $(BENCH_DIR)/backend

$(BENCH_DIR)/loadgen: bench/loadgen.c $(WOLFSSL_LIB)
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ $< $(WOLFSSL_LIB) -luv -lm -lpthread

$(BENCH_DIR)/backend: bench/backend.c
	@mkdir -p $(@D)
	$(CC) $(BENCH_CFLAGS) -o $@ $< -luv -lnghttp2

bench: bench-deps
	$(MAKE) build/postern bench-tools
	$(PYTHON) bench/run.py $(if $(call BENCH_TRUE,$(QUICK)),--quick,--readme) \
	  $(if $(PEERS),--peers $(PEERS)) $(BENCH_ARGS)
