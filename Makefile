# mxspool: a backup MX that holds mail while the mailbox store is down.
#
#   make run     build and start mxspoold on 127.0.0.1:2525 (spool in ./var)
#   make test    unit tests (cmocka), then integration tests (pytest)
#   make deb     the Debian package, in build-deb/ (mk/deb.sh)
#   make test-asan, make fuzz, make bench, make install, make check-fresh,
#   make clean, make fmt, make deps (deps-test, deps-bench, deps-fuzz)

# Installation directories, after the GNU conventions. The three state
# and config directories are compiled into the programs as their defaults
# (mxspoold -h shows them), so give the same values to `make` and to
# `make install`. PREFIX=/usr lays out the system as Debian does: /etc,
# /var, /run.
PREFIX  ?= /usr/local
DESTDIR ?=
ifeq ($(PREFIX),/usr)
sysconfdir    ?= /etc
localstatedir ?= /var
runstatedir   ?= /run
else
sysconfdir    ?= $(PREFIX)/etc
localstatedir ?= $(PREFIX)/var
runstatedir   ?= $(localstatedir)/run
endif
sbindir ?= $(PREFIX)/sbin
mandir  ?= $(PREFIX)/share/man
# `make install INSTALL_STRIP=` keeps the symbols (for a -dbg package).
INSTALL_STRIP ?= -s
BUILD   ?= build
ASAN_BUILD ?= build-asan
PYTHON  ?= /usr/bin/python3

PKGS = libevent_core libevent_extra libevent_openssl libevent_pthreads \
       openssl rocksdb libcares libconfuse jansson gmime-3.0 libidn2
# mxspoold's own: sd_notify(3), to tell systemd it is ready. Only its main
# file uses it, and nothing else links it.
DAEMON_PKGS = libsystemd

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
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) -I. -I$(BUILD)/gen $(PKG_CFLAGS) \
	     $(CFLAGS)
LDLIBS  += $(PKG_LIBS) -lpthread -lm
LINK     = $(CC) $(CFLAGS) $(LDFLAGS)

# Everything but the programs' main files goes into one archive, so the
# unit tests link exactly the objects they use.
LIB_SRCS  = $(wildcard common/*.c relay/*.c queue/*.c dns/*.c ctl/*.c)
LIB_SRCS := $(filter-out ctl/main.c,$(LIB_SRCS))
LIB_OBJS  = $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIB       = $(BUILD)/libmxspool.a

# mxspoolctl links the control protocol, common/ and the queue ids, and no
# more: not the archive, so neither RocksDB, c-ares, libevent nor OpenSSL
# (test_ctl.py checks with ldd).
CLI_SRCS  = $(wildcard cli/*.c)
CLI_OBJS  = $(CLI_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/ctl/ctl_proto.o \
	    $(BUILD)/queue/qid.o $(patsubst %.c,$(BUILD)/%.o,$(wildcard common/*.c))
CLI_LIBS  = $(shell pkg-config --libs libconfuse jansson libidn2 2>/dev/null) \
	    -lpthread
PROGS     = $(BUILD)/mxspoold $(if $(CLI_SRCS),$(BUILD)/mxspoolctl)

UNIT_SRCS  = $(wildcard tests/unit/*/test_*.c)
UNIT_BINS  = $(UNIT_SRCS:%.c=$(BUILD)/%)
TOOL_SRCS  = $(wildcard tests/tools/*.c)
TOOL_BINS  = $(TOOL_SRCS:%.c=$(BUILD)/%) $(BUILD)/tests/tools/spoolcrash-mutant
BENCH_SRCS = $(wildcard bench/*.c)
BENCH_BINS = $(BENCH_SRCS:%.c=$(BUILD)/%)

.SECONDARY:

.PHONY: all deps deps-test deps-bench deps-fuzz run test test-unit \
	test-integration test-asan fuzz fuzz-bins bench install check-fresh \
	clean fmt FORCE

all: $(PROGS)

# The Debian packages each target needs (mk/deps.sh lists them).
deps:
	@sh mk/deps.sh build
deps-test:
	@sh mk/deps.sh build test
deps-bench:
	@sh mk/deps.sh build bench
deps-fuzz:
	@sh mk/deps.sh build fuzz

# The directories compiled in, rewritten only when they change, so that a
# new PREFIX rebuilds what uses them and nothing else.
PATHS_H = $(BUILD)/gen/mxspool_paths.h
$(PATHS_H): FORCE
	@mkdir -p $(dir $@)
	@printf '%s\n' '/* Made by the Makefile from its directory variables. */' \
	    '#define MXSPOOL_SYSCONFDIR "$(sysconfdir)"' \
	    '#define MXSPOOL_LOCALSTATEDIR "$(localstatedir)"' \
	    '#define MXSPOOL_RUNSTATEDIR "$(runstatedir)"' > $@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

$(BUILD)/%.o: %.c | $(PATHS_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(LIB): $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/ctl/main.o: ALL_CFLAGS += \
	$(shell pkg-config --cflags $(DAEMON_PKGS) 2>/dev/null)

$(BUILD)/mxspoold: $(BUILD)/ctl/main.o $(LIB)
	$(LINK) -o $@ $^ $(LDLIBS) \
	    $(shell pkg-config --libs $(DAEMON_PKGS) 2>/dev/null)

$(BUILD)/mxspoolctl: $(CLI_OBJS)
	$(LINK) -o $@ $^ $(CLI_LIBS)

$(BUILD)/tests/unit/%: $(BUILD)/tests/unit/%.o $(LIB)
	$(LINK) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/tests/tools/%: $(BUILD)/tests/tools/%.o $(LIB)
	$(LINK) -o $@ $^ $(LDLIBS)

# The crash test's proof that it can fail: the spool writer built with a
# deliberate bug (acknowledging before writing), see queue/commit.c.
$(BUILD)/queue/commit-mutant.o: queue/commit.c | $(PATHS_H)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -DCOMMIT_MUTANT_ACK_EARLY -c -o $@ $<

$(BUILD)/tests/tools/spoolcrash-mutant: $(BUILD)/tests/tools/spoolcrash.o \
		$(BUILD)/queue/commit-mutant.o $(LIB)
	$(LINK) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(LINK) -o $@ $^ $(LDLIBS)

DEV_CONF = etc/mxspool-dev.conf

run: deps
	@$(MAKE) --no-print-directory all
	@# mxspoold makes var/spool 0700; one an older make run made 0755
	@# would be refused (spool_dir_check).
	@mkdir -p var && chmod 0700 var/spool 2>/dev/null || true
	@echo "mxspoold: listening on 127.0.0.1:2525, spool in ./var/spool"
	@echo "  send a test message:  swaks --server 127.0.0.1:2525 --to user@example.com"
	@echo "                        (swaks: apt-get install swaks, or make deps-test)"
	@echo "  look at the queue:    $(BUILD)/mxspoolctl -c $(DEV_CONF) summary"
	@echo "  stop:                 Ctrl-C"
	exec $(BUILD)/mxspoold -c $(DEV_CONF)

test: deps-test
	@$(MAKE) --no-print-directory test-unit test-integration

test-unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do \
		echo "== $$t"; $$t || fail=1; \
	done; exit $$fail

test-integration: $(PROGS) $(TOOL_BINS) $(BUILD)/bench/spool
	MXSPOOL_BUILD=$(abspath $(BUILD)) $(PYTHON) -m pytest -q tests/integration

# The same suite built with ASan+UBSan in a build directory of its own.
# RocksDB's own threads are not instrumented; leak checks stay on.
test-asan: deps-test
	@$(MAKE) --no-print-directory BUILD=$(ASAN_BUILD) \
		CFLAGS="-g -O1 $(SAN)" LDFLAGS="$(SAN)" \
		test-unit test-integration

# The libFuzzer targets of tests/fuzz/, built with clang, ASan and UBSan
# in a build directory of their own; each runs for FUZZ_TIME seconds on
# its seed corpus, tests/fuzz/corpus/NAME/ (mk/fuzz.sh). What a run finds
# goes to $(FUZZ_BUILD)/fuzz-corpus/NAME/, never into the committed
# corpus; a crash, a leak, a hang or a blown memory limit fails the run,
# and the input is kept in $(FUZZ_BUILD)/fuzz-crashes/NAME/.
FUZZ_BUILD ?= build-fuzz
FUZZ_CC    ?= clang
FUZZ_TIME  ?= 60
FUZZ_TARGETS ?= parse envelope reply dns walcheck config ctl proxy
FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=all \
	   -fno-omit-frame-pointer

# What each target links besides its own file: the pure code it drives,
# never the archive (fuzz_ctl.c stands in for the queue, the scheduler
# and the resolver).
FUZZ_O = $(patsubst %,$(BUILD)/%.o,$(1))
FUZZ_BIN = $(BUILD)/tests/fuzz/fuzz_
$(FUZZ_BIN)parse: $(call FUZZ_O,relay/parse relay/parse_data common/xmem)
$(FUZZ_BIN)envelope: $(call FUZZ_O,queue/envelope queue/qid common/xmem)
$(FUZZ_BIN)reply: $(call FUZZ_O,relay/client_proto relay/parse_data \
	relay/downgrade common/idn common/utf8 common/xmem)
$(FUZZ_BIN)dns: $(call FUZZ_O,dns/reply dns/cache dns/mx dns/answer \
	common/xmem)
$(FUZZ_BIN)walcheck: $(call FUZZ_O,queue/walcheck common/xmem)
# The config loader, whatever files it is split into.
FUZZ_CONF = $(patsubst %.c,%,$(wildcard common/conf*.c)) common/idn \
	common/priv common/log common/xmem
$(FUZZ_BIN)config: $(call FUZZ_O,$(FUZZ_CONF))
$(FUZZ_BIN)ctl: $(call FUZZ_O,ctl/ctl ctl/ctl_cmd ctl/ctl_util ctl/reload \
	ctl/ctl_proto $(FUZZ_CONF) common/hmap common/metrics dns/answer \
	queue/envelope queue/qid queue/qindex)
$(FUZZ_BIN)proxy: $(call FUZZ_O,relay/proxy)

$(BUILD)/tests/fuzz/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o
	$(LINK) -o $@ $^ $(LDLIBS)

fuzz-bins: $(FUZZ_TARGETS:%=$(FUZZ_BIN)%)

fuzz: deps-fuzz
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) \
		CFLAGS="-g -O1 $(FUZZ_SAN) -fsanitize=fuzzer-no-link" \
		LDFLAGS="$(FUZZ_SAN) -fsanitize=fuzzer" fuzz-bins
	@sh mk/fuzz.sh $(FUZZ_BUILD) $(FUZZ_TIME) $(FUZZ_TARGETS)

bench: deps-bench
	@$(MAKE) --no-print-directory all $(BENCH_BINS)
	@for b in bench/*.sh; do [ -f "$$b" ] && BUILD=$(BUILD) sh "$$b"; done; true

# The FHS layout (with PREFIX=/usr): programs in /usr/sbin (and
# mxspool-mailq, a link to mxspoolctl that runs its mailq), the config
# template in /etc/mxspool (an existing config is never overwritten), man
# pages under /usr/share/man, the spool directory /var/spool/mxspool, 0700.
# The control socket's directory ($(runstatedir)/mxspool) is made by
# mxspoold at start, as /run is emptied at boot.
CONF_DIR  = $(DESTDIR)$(sysconfdir)/mxspool
SPOOL_DIR = $(localstatedir)/spool/mxspool
SUBST_PATHS = sed -e 's|/etc/mxspool|$(sysconfdir)/mxspool|g' \
	-e 's|/var/spool/mxspool|$(SPOOL_DIR)|g' \
	-e 's|/run/mxspool|$(runstatedir)/mxspool|g'

install: all
	install -d $(DESTDIR)$(sbindir) $(CONF_DIR) \
		$(DESTDIR)$(mandir)/man5 $(DESTDIR)$(mandir)/man8
	install -d -m 0700 $(DESTDIR)$(SPOOL_DIR)
	install -m 0755 $(INSTALL_STRIP) $(PROGS) $(DESTDIR)$(sbindir)/
	ln -sf mxspoolctl $(DESTDIR)$(sbindir)/mxspool-mailq
	@if [ -e $(CONF_DIR)/mxspool.conf ]; then \
		echo "install: keeping $(CONF_DIR)/mxspool.conf"; \
	else \
		echo "install: $(CONF_DIR)/mxspool.conf"; \
		$(SUBST_PATHS) etc/mxspool.conf > $(CONF_DIR)/mxspool.conf && \
		chmod 0644 $(CONF_DIR)/mxspool.conf; \
	fi
	for m in docs/*.5 docs/*.8; do \
		$(SUBST_PATHS) "$$m" > $(DESTDIR)$(mandir)/man$${m##*.}/$${m##*/} && \
		chmod 0644 $(DESTDIR)$(mandir)/man$${m##*.}/$${m##*/} || exit 1; \
	done

# The Debian package (debian/), built by dpkg-buildpackage from a copy of
# the tree without its build directories: mxspool_VERSION_ARCH.deb, its
# -dbgsym and the .changes in $(DEB_DIR) (mk/deb.sh). deb-check installs
# it on this machine and checks the installed system (as root; meant for
# make check-fresh's bare root).
DEB_DIR ?= build-deb
.PHONY: deps-deb deb deb-check
deps-deb:
	@sh mk/deps.sh build deb
deb: deps-deb
	@sh mk/deb.sh build $(DEB_DIR)
deb-check: deb
	@sh mk/deb.sh check $(DEB_DIR)

# make test as root in a bare Debian 12 root, on a clean clone of HEAD:
# proves that mk/deps.sh lists every package (mk/check-fresh.sh); then
# the package is built, installed and checked there (deb-check).
check-fresh:
	sh mk/check-fresh.sh test deb-check

# Leaves build-fresh/, the cache of make check-fresh's Debian root.
clean:
	rm -rf $(filter-out build-fresh,$(wildcard build build-*))

fmt:
	clang-format -i $$(find common relay queue dns ctl cli tests bench -name '*.[ch]')

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
