# mxspool: a backup MX that holds mail while the mailbox store is down.
#
#   make run     build and start mxspoold on 127.0.0.1:2525 (spool in ./var)
#   make test    unit tests (cmocka), then integration tests (pytest)
#   make test-asan, make bench, make install, make clean, make fmt

PREFIX  ?= /usr/local
DESTDIR ?=
BUILD   ?= build
ASAN_BUILD ?= build-asan
PYTHON  ?= /usr/bin/python3

PKGS = libevent_core libevent_extra libevent_openssl libevent_pthreads \
       openssl rocksdb libcares libconfuse jansson

WARN = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
       -Wmissing-prototypes -Wpointer-arith -Wcast-qual -Wformat=2 -Wvla \
       -Wimplicit-fallthrough -Wundef
SAN  = -fsanitize=address,undefined -fno-sanitize-recover=all \
       -fno-omit-frame-pointer

# CFLAGS and LDFLAGS are the user's (test-asan sets them); the rest is
# always added.
CFLAGS  ?= -g -O2
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) -I. $(PKG_CFLAGS) $(CFLAGS)
LDLIBS  += $(PKG_LIBS) -lpthread -lm
LINK     = $(CC) $(CFLAGS) $(LDFLAGS)

# Everything but the programs' main files goes into one archive, so the
# unit tests link exactly the objects they use.
LIB_SRCS  = $(wildcard common/*.c relay/*.c queue/*.c dns/*.c)
LIB_SRCS := $(filter-out relay/main.c,$(LIB_SRCS))
LIB_OBJS  = $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB       = $(BUILD)/libmxspool.a

CLI_SRCS  = $(wildcard cli/*.c)
PROGS     = $(BUILD)/mxspoold $(if $(CLI_SRCS),$(BUILD)/mxspoolctl)

UNIT_SRCS  = $(wildcard tests/unit/*/test_*.c)
UNIT_BINS  = $(UNIT_SRCS:%.c=$(BUILD)/%)
TOOL_SRCS  = $(wildcard tests/tools/*.c)
TOOL_BINS  = $(TOOL_SRCS:%.c=$(BUILD)/%) $(BUILD)/tests/tools/spoolcrash-mutant
BENCH_SRCS = $(wildcard bench/*.c)
BENCH_BINS = $(BENCH_SRCS:%.c=$(BUILD)/%)

.SECONDARY:

.PHONY: all deps run test test-unit test-integration test-asan bench \
	install clean fmt

all: $(PROGS)

deps:
	@sh mk/deps.sh

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(LIB): $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/mxspoold: $(BUILD)/relay/main.o $(LIB)
	$(LINK) -o $@ $^ $(LDLIBS)

$(BUILD)/mxspoolctl: $(CLI_SRCS:%.c=$(BUILD)/%.o) $(LIB)
	$(LINK) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(LIB)
	$(LINK) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/tests/tools/%: $(BUILD)/tests/tools/%.o $(LIB)
	$(LINK) -o $@ $^ $(LDLIBS)

# The crash test's proof that it can fail: the spool writer built with a
# deliberate bug (acknowledging before writing), see queue/commit.c.
$(BUILD)/queue/commit-mutant.o: queue/commit.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -DCOMMIT_MUTANT_ACK_EARLY -c -o $@ $<

$(BUILD)/tests/tools/spoolcrash-mutant: $(BUILD)/tests/tools/spoolcrash.o \
		$(BUILD)/queue/commit-mutant.o $(LIB)
	$(LINK) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(LINK) -o $@ $^ $(LDLIBS)

run: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p var/spool
	@echo "mxspoold: listening on 127.0.0.1:2525, spool in ./var/spool"
	@echo "  send a test message:  swaks --server 127.0.0.1:2525 --to user@example.com"
	@echo "  look at the queue:    $(BUILD)/mxspoolctl -c etc/mxspool.conf summary"
	@echo "  stop:                 Ctrl-C"
	exec $(BUILD)/mxspoold -c etc/mxspool.conf

test: deps
	@$(MAKE) --no-print-directory test-unit test-integration

test-unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do \
		echo "== $$t"; $$t || fail=1; \
	done; exit $$fail

test-integration: $(PROGS) $(TOOL_BINS)
	MXSPOOL_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q tests/integration

# The same suite built with ASan+UBSan in a build directory of its own.
# RocksDB's own threads are not instrumented; leak checks stay on.
test-asan: deps
	@$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) \
		CFLAGS="-g -O1 $(SAN)" LDFLAGS="$(SAN)" \
		test-unit test-integration

bench: deps
	@sh mk/deps.sh bench
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	@for b in bench/*.sh; do [ -f "$$b" ] && BUILD=$(BUILD) sh "$$b"; done; true

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/etc/mxspool \
		$(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(PREFIX)/share/man/man5
	install -m 0755 $(PROGS) $(DESTDIR)$(PREFIX)/sbin/
	@conf=$(DESTDIR)$(PREFIX)/etc/mxspool/mxspool.conf; \
	if [ -e "$$conf" ]; then \
		echo "install: keeping existing $$conf"; \
	else \
		sed -e 's|^listen = .*|listen = {"0.0.0.0:25", "[::]:25"}|' \
		    -e 's|^spool_dir = .*|spool_dir = "/var/spool/mxspool"|' \
		    -e 's|^control_socket = .*|control_socket = "/run/mxspool/control.sock"|' \
		    -e 's|^dns_servers = .*|#dns_servers = {"127.0.0.1:53"}|' \
		    etc/mxspool.conf > "$$conf" && chmod 0644 "$$conf"; \
	fi
	for m in docs/*.8; do [ -f "$$m" ] && install -m 0644 "$$m" \
		$(DESTDIR)$(PREFIX)/share/man/man8/; done; true
	for m in docs/*.5; do [ -f "$$m" ] && install -m 0644 "$$m" \
		$(DESTDIR)$(PREFIX)/share/man/man5/; done; true

clean:
	rm -rf build build-asan build-*

fmt:
	clang-format -i $$(find common relay queue dns cli tests bench -name '*.[ch]')

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
