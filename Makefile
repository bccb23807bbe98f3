# tenki: tenkid (daemon + FUSE tree), tenki-agent (static, in the guest),
# tenki-subreaper (parent of libvirtd that reaps at once).
CC      ?= cc
PKGS    := fuse3 libvirt jansson libssh
CFLAGS  ?= -O2 -g
# The project's own flags, kept apart so `make CFLAGS=…` cannot drop them.
XCFLAGS := -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wno-format-truncation \
           -D_GNU_SOURCE -DTENKI_VERSION=\"0.1.0\" -Iproto -Idaemon -Ifs
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
LDLIBS  := $(PKG_LIBS) -lpthread

B := build
DAEMON_SRCS := $(filter-out daemon/tenkid.c,$(wildcard daemon/*.c)) \
               $(wildcard fs/*.c) proto/frame.c
DAEMON_OBJS := $(DAEMON_SRCS:%.c=$(B)/%.o)
AGENT_SRCS  := $(wildcard guest/*.c) proto/frame.c
UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
UNIT_BINS   := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)

all: $(B)/tenkid $(B)/tenki-agent $(B)/tenki-subreaper

$(B)/%.o: %.c $(wildcard proto/*.h daemon/*.h fs/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(B)/tenkid: $(B)/daemon/tenkid.o $(DAEMON_OBJS)
	$(CC) $(CFLAGS) $(XCFLAGS) -o $@ $^ $(LDLIBS)

# The agent is PID 1 in the guest: static, no NSS, jansson linked in.
$(B)/tenki-agent: $(AGENT_SRCS) $(wildcard proto/*.h guest/*.h)
	@mkdir -p $(B)
	$(CC) $(CFLAGS) $(XCFLAGS) -static -o $@ $(AGENT_SRCS) -l:libjansson.a

# A hostile stand-in for the agent, for tests/e2e/hostile.bats only.
$(B)/tenki-hostile-agent: tests/hostile/hostile_agent.c proto/frame.c proto/proto.h
	@mkdir -p $(B)
	$(CC) $(CFLAGS) $(XCFLAGS) -static -o $@ tests/hostile/hostile_agent.c proto/frame.c

$(B)/tenki-subreaper: scripts/subreaper.c
	@mkdir -p $(B)
	$(CC) $(CFLAGS) $(XCFLAGS) -o $@ $<

$(B)/tests/%: tests/unit/%.c $(DAEMON_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) $(PKG_CFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# Sanitizer build: the same tree, in build/asan, with ASan and UBSan.
asan:
	$(MAKE) B=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer" build/asan/tenkid

# The guest image (kernel, initramfs with the agent, root filesystem) lives
# in /var/cache/tenki; the script rebuilds only what changed.
image: $(B)/tenki-agent
	scripts/build-image.sh --agent $(B)/tenki-agent

unit: $(UNIT_BINS)
	scripts/run-unit.sh $(UNIT_BINS)

# make test first runs the set-up check (installs only what is missing,
# starts libvirt if nothing runs it; never starts a tenkid), so a fresh
# clone on a fresh machine tests with this one command.
setup-check:
	scripts/setup.sh --no-daemon

test: setup-check
	$(MAKE) all image $(UNIT_BINS) $(B)/tenki-hostile-agent
	scripts/run-tests.sh

# Long forms of the load and fuzz tests (not part of make test).
soak: all image
	TENKI_TESTS=e2e TENKI_E2E="load hostile" TENKI_LOAD_SESSIONS=20 \
		TENKI_LOAD_CYCLES=500 scripts/run-tests.sh
	$(MAKE) -C tests/fuzz run-long

# The same tests with tenkid built with ASan and UBSan; any report fails.
test-asan: setup-check asan
	$(MAKE) all image $(UNIT_BINS) $(B)/tenki-hostile-agent
	rm -rf build/asan-logs && mkdir -p build/asan-logs
	ASAN_OPTIONS=abort_on_error=1:detect_leaks=1:log_path=$(CURDIR)/build/asan-logs/asan \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(CURDIR)/build/asan-logs/ubsan \
	TENKID=$(CURDIR)/build/asan/tenkid TENKI_TESTS="unit e2e" scripts/run-tests.sh
	@if ls build/asan-logs/* >/dev/null 2>&1; then cat build/asan-logs/*; \
	  echo "sanitizer reports above"; exit 1; fi

bench: all image
	scripts/bench.sh

fuzz:
	$(MAKE) -C tests/fuzz run-long

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

.PHONY: soak all asan image unit test test-asan bench fuzz format clean setup-check
.SECONDARY:
