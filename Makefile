# tenki: tenkid (daemon + FUSE tree), tenki-agent (static, in the guest),
# tenki-subreaper (parent of libvirtd that reaps at once), tenki (the CLI,
# file operations on the mounted tree only).
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
CLI_SRCS    := $(wildcard cli/*.c)
CLI_OBJS    := $(CLI_SRCS:%.c=$(B)/%.o)
UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
UNIT_BINS   := $(UNIT_SRCS:tests/unit/%.c=$(B)/tests/%)

all: $(B)/tenkid $(B)/tenki-agent $(B)/tenki-subreaper $(B)/tenki docs/tenki-fs.5

PREFIX  ?= /usr/local
DESTDIR ?=

$(B)/%.o: %.c $(wildcard proto/*.h daemon/*.h fs/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(B)/tenkid: $(B)/daemon/tenkid.o $(DAEMON_OBJS)
	$(CC) $(CFLAGS) $(XCFLAGS) -o $@ $^ $(LDLIBS)

$(B)/cli/%.o: cli/%.c cli/tenki.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(XCFLAGS) $(shell pkg-config --cflags jansson) -c -o $@ $<

# The CLI needs only jansson: it talks to tenkid through the tree alone.
$(B)/tenki: $(CLI_OBJS)
	$(CC) $(CFLAGS) $(XCFLAGS) -o $@ $^ $(shell pkg-config --libs jansson) -lpthread

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
	TENKI_TESTS=unit scripts/run-tests.sh

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
	TENKI_TESTS=e2e TENKI_E2E="load hostile snapshots" TENKI_LOAD_SESSIONS=20 \
		TENKI_LOAD_CYCLES=500 TENKI_SNAP_TRIALS=10 scripts/run-tests.sh
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

# tenki-fs(5) is docs/tree.md as roff; regenerated when the page changes.
docs/tenki-fs.5: docs/tree.md scripts/md2man.py
	python3 scripts/md2man.py 5 tenki-fs <docs/tree.md >$@

man: docs/tenki-fs.5

# tenki, tenkid and tenki-subreaper, the man pages and bash completion;
# the agent travels inside the guest image, not here.
install: $(B)/tenki $(B)/tenkid $(B)/tenki-subreaper docs/tenki-fs.5
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man8 \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 755 $(B)/tenki $(B)/tenkid $(B)/tenki-subreaper $(DESTDIR)$(PREFIX)/bin/
	install -m 644 docs/tenki.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 docs/tenki-fs.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	install -m 644 docs/tenkid.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 644 guest/tenki-agent.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 644 cli/tenki.bash-completion \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions/tenki

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/tenki $(DESTDIR)$(PREFIX)/bin/tenkid \
	  $(DESTDIR)$(PREFIX)/bin/tenki-subreaper \
	  $(DESTDIR)$(PREFIX)/share/man/man1/tenki.1 \
	  $(DESTDIR)$(PREFIX)/share/man/man5/tenki-fs.5 \
	  $(DESTDIR)$(PREFIX)/share/man/man8/tenkid.8 \
	  $(DESTDIR)$(PREFIX)/share/man/man8/tenki-agent.8 \
	  $(DESTDIR)$(PREFIX)/share/bash-completion/completions/tenki

clean:
	rm -rf build

.PHONY: soak all asan image unit test test-asan bench fuzz format clean setup-check install uninstall man
.SECONDARY:
