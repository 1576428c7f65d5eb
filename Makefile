# ota: secure OTA updates for MQTT device fleets.
#   make          build build/ota-gateway and build/ota-device
#   make test     install missing Debian packages, build with ASan+UBSan,
#                 run unit and system tests; ends with "N passed, N failed"
#   make test-rabbitmq  the system on a 3-node RabbitMQ cluster, security checks on RabbitMQ
#   make demo     broker + gateway + 5 devices + one release, end to end
#   make bench    benchmarks into docs/BENCHMARKS.md (~20 min); make bench-quick: ~4 min
#   make crashpoints  a power cut before and after every state-changing call
CC      ?= cc
PKGS    := libmosquitto libuv jansson libcurl openssl libzstd
# Only the gateway links libwebsockets (its HTTP side, gateway/http.c).
GW_PKGS := libwebsockets
WARN    := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wformat=2 -Wno-format-nonliteral -Wno-format-truncation
DEFS    := -D_GNU_SOURCE
OPT     ?= -O2 -g
CFLAGS_ALL = $(WARN) $(DEFS) $(OPT) -I. $(shell pkg-config --cflags $(PKGS) $(GW_PKGS) 2>/dev/null) $(EXTRA_CFLAGS)
LDLIBS_ALL = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -llmdb -lm $(EXTRA_LDFLAGS)

# Build variant: `make` -> build/, `make VARIANT=asan` -> build/asan/ (the test
# build: sanitizers and the test hooks), `make VARIANT=hooks` -> build/hooks/ (optimised,
# with the test hooks). Test hooks (OTA_TEST_HOOKS: the device's test_* keys, simulated
# loss and corruption, crash points, a clock behind) exist only in these two; a release
# binary refuses a test_* key.
VARIANT ?=
ifeq ($(VARIANT),asan)
B       := build/asan
OPT     := -O1 -g -fno-omit-frame-pointer
EXTRA_CFLAGS  := -fsanitize=address,undefined -fno-sanitize-recover=all
EXTRA_LDFLAGS := -fsanitize=address,undefined
DEFS    += -DOTA_TEST_HOOKS
else ifeq ($(VARIANT),hooks)
B       := build/hooks
DEFS    += -DOTA_TEST_HOOKS
else
B       := build
endif
# `make V=1` shows the full commands.
ifeq ($(V),1)
Q :=
else
Q := @
MAKEFLAGS += --no-print-directory
endif

PROTO_SRC  := $(wildcard proto/*.c)
COMMON_SRC := $(wildcard common/*.c)
STORE_SRC  := $(wildcard store/*.c)
GW_SRC     := $(wildcard gateway/*.c)
DEV_SRC    := $(wildcard device-client/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))
LIB_OBJ := $(call obj,$(PROTO_SRC) $(COMMON_SRC) $(STORE_SRC))
GW_OBJ  := $(call obj,$(GW_SRC))
DEV_OBJ := $(call obj,$(DEV_SRC))
UNIT_BIN := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
TOOL_SRC := $(wildcard tests/tools/*.c)
TOOL_BIN := $(patsubst tests/tools/%.c,$(B)/tools/%,$(TOOL_SRC))
# LD_PRELOAD interposer of the crash-point tests: no sanitizer of its own (it
# loads after the sanitizer runtime of the programs it watches).
PRELOAD_BIN := $(B)/tools/crashpoint.so

.PHONY: all deps test test-rabbitmq unit system demo bench bench-quick bench-deps clean format check-format
all: $(B)/ota-gateway $(B)/ota-device

$(B)/libota.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	$(Q)$(AR) rcs $@ $^

$(B)/ota-gateway: $(GW_OBJ) $(B)/libota.a
	$(Q)$(CC) -o $@ $^ $(LDLIBS_ALL) $(shell pkg-config --libs $(GW_PKGS) 2>/dev/null)

$(B)/ota-device: $(DEV_OBJ) $(B)/libota.a
	$(Q)$(CC) -o $@ $^ $(LDLIBS_ALL)

$(B)/obj/%.o: %.c
	@mkdir -p $(@D)
	@echo '  CC      $<'
	$(Q)$(CC) $(CFLAGS_ALL) -MMD -MP -c -o $@ $<

$(B)/tests/%: tests/unit/%.c $(B)/libota.a
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) -lcmocka

# test_dev_rx and test_dev_blocks drive the device's receiver and block
# assembler, which are not in libota.a.
$(B)/tests/test_dev_rx: tests/unit/test_dev_rx.c $(call obj,device-client/rx.c) $(B)/libota.a
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) -lcmocka

$(B)/tests/test_dev_blocks: tests/unit/test_dev_blocks.c \
		$(call obj,device-client/blocks.c device-client/rx.c) $(B)/libota.a
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) -lcmocka

# test_fuzz_replay includes the fuzz targets, some of which test gateway and
# device code that is not in libota.a.
FUZZ_REPLAY_OBJ := $(call obj,device-client/persist.c gateway/fsck.c gateway/status.c \
		   gateway/ledger.c gateway/failed.c)
$(B)/tests/test_fuzz_replay: tests/unit/test_fuzz_replay.c $(wildcard tests/fuzz/*.c) \
		$(FUZZ_REPLAY_OBJ) $(B)/libota.a
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $(filter-out tests/fuzz/%,$^) $(LDLIBS_ALL) -lcmocka

# The gateway's sender (pure logic) under a simulated clock and link, and the
# sender's conformance vectors (tests/vectors/sender).
$(B)/tests/test_gw_sender: tests/unit/test_gw_sender.c tests/unit/sim.h tests/unit/sender_vectors.h \
		$(call obj,gateway/sender.c) $(B)/libota.a
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $(filter-out %.h,$^) $(LDLIBS_ALL) -lcmocka
# The releases a device failed: the targeting rule and the ledger's record.
$(B)/tests/test_gw_failed: tests/unit/test_gw_failed.c $(call obj,gateway/catalog.c \
		gateway/clock.c gateway/failed.c gateway/ledger.c) $(B)/libota.a
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) -lcmocka
# test_gw_run runs the gateway's and the devices' lifecycles on one loop: it links their
# objects, not their main().
RUN_TEST_OBJ := $(filter-out %/main.o,$(GW_OBJ) $(DEV_OBJ))
$(B)/tests/test_gw_run: tests/unit/test_gw_run.c $(RUN_TEST_OBJ) $(B)/libota.a
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL) \
		$(shell pkg-config --libs $(GW_PKGS) 2>/dev/null) -lcmocka

$(B)/tools/%: tests/tools/%.c $(B)/libota.a
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDLIBS_ALL)

$(B)/tools/crashpoint.so: tests/tools/preload/crashpoint.c
	@mkdir -p $(@D)
	$(Q)$(CC) $(WARN) $(DEFS) -O2 -g -fPIC -shared -o $@ $< -ldl
# The dashboard's files are embedded in http_web.o (.incbin).
$(B)/obj/gateway/http_web.o: $(wildcard gateway/web/*)

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)

deps:
	@sh deploy/deps.sh

# The README's test command. Checks the formatting (see check-format), builds the
# sanitized variant and runs it all.
test: deps
	@$(MAKE) --no-print-directory check-format
	@$(MAKE) --no-print-directory VARIANT=asan all-tests
	@sh tests/run.sh build/asan

all-tests: all $(UNIT_BIN) $(TOOL_BIN) $(PRELOAD_BIN)

# The system on RabbitMQ (deploy/rabbitmq): test_rabbitmq.sh (a 3-node cluster on loopback,
# one node stopped and restarted mid-transfer: 3-5 minutes on a busy 2-core machine, so not
# in `make test`), the broker security and identity checks against RabbitMQ with its
# own expectations, and the standby gateway's takeover (test_standby.sh). CI (.ci/run)
# runs it after `make test`.
RABBITMQ_TESTS := ^test_(rabbitmq|broker_security|identity|standby)\.sh$$
test-rabbitmq: deps
	@$(MAKE) --no-print-directory VARIANT=asan all-tests
	@OTA_BROKER=rabbitmq OTA_TEST_FILTER='$(RABBITMQ_TESTS)' sh tests/run.sh build/asan system

unit: deps
	@$(MAKE) --no-print-directory VARIANT=asan all-tests
	@sh tests/run.sh build/asan unit

system: deps
	@$(MAKE) --no-print-directory VARIANT=asan all-tests
	@sh tests/run.sh build/asan system

demo: deps
	@$(MAKE) --no-print-directory all
	@bash deploy/demo.sh build

# Benchmarks on the optimised build (tests/bench/run.sh). `make bench` writes
# docs/BENCHMARKS.md and docs/links.png (under 30 minutes); `make bench-quick` is a first
# look in under 5 minutes, written to build/BENCHMARKS-quick.md.
bench: bench-deps
	@$(MAKE) all $(TOOL_BIN)
	@bash tests/bench/run.sh build full

bench-quick: bench-deps
	@$(MAKE) all $(TOOL_BIN)
	@bash tests/bench/run.sh build quick

bench-deps: deps
	@sh deploy/deps.sh bench

# libFuzzer (clang) on every decoder, the config parser, the ledger records and the
# device's state.json: every target FUZZ_SECONDS, on a corpus kept in build/fuzz/corpus/
# between runs (seeded and extended by the committed tests/fuzz/corpus/); a crash is
# copied to tests/fuzz/crashes/<target>/ (replayed by test_fuzz_replay) and fails.
# fuzz-long: every target to FUZZ_LONG_RUNS executions, one at a time, niced, with the
# table for docs/SECURITY.md in build/fuzz/fuzz-long.md. fuzz-save: merge what the
# working corpus adds into the committed one. FUZZ_TARGETS picks some. tests/fuzz/run.sh.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
FUZZ_LONG_RUNS ?= 10000000
.PHONY: fuzz fuzz-long fuzz-save fuzz-deps
fuzz: fuzz-deps
	@sh tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-long: fuzz-deps
	@FUZZ_LONG_RUNS=$(FUZZ_LONG_RUNS) nice sh tests/fuzz/run.sh long $(FUZZ_TARGETS)

fuzz-save: fuzz-deps
	@sh tests/fuzz/run.sh save $(FUZZ_TARGETS)

fuzz-deps: deps
	@sh deploy/deps.sh fuzz

# Power cuts right before and right after every state-changing file-system call of the
# device (an update that commits, one that rolls back) and of the gateway (announce,
# verify, a campaign): tests/system/test_crashpoints.sh and test_gw_crashpoints.sh in full
# (make test runs a sample of each).
.PHONY: crashpoints
crashpoints: deps
	@$(MAKE) --no-print-directory VARIANT=asan all-tests
	@OTA_CRASHPOINTS=full OTA_TEST_TIMEOUT=7200 OTA_TEST_FILTER='crashpoints' \
		sh tests/run.sh build/asan system

# Formatting: .clang-format describes the code as it is written. `make format` rewrites
# every C file to it; `make check-format` lists the files it would change (with how many
# lines) and fails (FORMAT_STRICT=0 only counts them).
FORMAT_STRICT ?= 1
FORMAT_SRC := $(sort $(PROTO_SRC) $(COMMON_SRC) $(STORE_SRC) $(GW_SRC) $(DEV_SRC) \
	$(wildcard */*.h tests/unit/*.[ch] tests/tools/*.c tests/tools/preload/*.c \
	tests/fuzz/*.c))
format:
	clang-format -i $(FORMAT_SRC)

check-format:
	@command -v clang-format >/dev/null || { echo "check-format: no clang-format \
	(sh deploy/deps.sh)"; exit 1; }; \
	n=0; for f in $(FORMAT_SRC); do \
		d=$$(clang-format "$$f" | diff "$$f" - | grep -c '^<'); \
		[ "$$d" -eq 0 ] && continue; n=$$((n + 1)); \
		[ "$(FORMAT_STRICT)" = 1 ] && echo "  $$f: $$d lines differ"; \
	done; \
	if [ $$n -eq 0 ]; then echo "check-format: every file matches .clang-format"; \
	elif [ "$(FORMAT_STRICT)" = 1 ]; then \
		echo "check-format: $$n files differ from .clang-format (make format)"; exit 1; \
	else echo "check-format: $$n files differ from .clang-format (FORMAT_STRICT=0: \
	not an error until the tree is formatted; make check-format FORMAT_STRICT=1 lists them)"; fi

clean:
	rm -rf build
