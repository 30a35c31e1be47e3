# wpack — one static library (libwpack.a) from the modules, the `wpack` command
# from cli/, one test runner from tests/.  Sources are found by wildcard so a new
# file in a module needs no Makefile edit.
#
#   make            build        make test     build + run every test
#   make SAN=1 ...  ASan+UBSan   make demo     the tiny-a walk-through
#   make BUILD=dir  out-of-tree build directory (default: build, build-san)
#   make WERROR=    drop -Werror (local hacking only; CI keeps it)
#   make install PREFIX=/usr/local DESTDIR=   the command, its man page and
#                   bash completion, libwpack.a, its headers, wpack.pc
#   make uninstall  (same PREFIX/DESTDIR) removes exactly what install put there
#   make test J=4   run 4 tests at once (default: every online CPU; env WPT_JOBS)

BUILD  ?= build
SAN    ?=
WERROR ?= -Werror
CC     ?= cc

OPT    ?= -O2 -g
CFLAGS += $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra $(WERROR) -pthread -I. -MMD -MP
LDLIBS += -lzstd -lcrypto -lcjson -lhugetlbfs -lpthread -lm

# Sanitised objects never share a directory with plain ones (a command-line
# BUILD= cannot be reassigned, hence the derived OUT).
ifeq ($(SAN),1)
  OUT     := $(BUILD)-san
  SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
  CFLAGS  += $(SANFLAGS)
  LDFLAGS += $(SANFLAGS)
else
  OUT     := $(BUILD)
endif

MODULES  := common hf model quant format trust convert runtime verify
LIB_SRC  := $(sort $(wildcard $(addsuffix /*.c,$(MODULES))))
CLI_SRC  := $(sort $(wildcard cli/*.c))
TEST_SRC := $(sort $(wildcard tests/*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(OUT)/obj/%.o) $(OUT)/obj/gen/profiles.o
# Build profiles are data (convert/profiles/*.json), compiled into the binary
# so `wpack convert --profile hopper` works from any directory.
PROFILES := $(sort $(wildcard convert/profiles/*.json))
CLI_OBJ  := $(CLI_SRC:%.c=$(OUT)/obj/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(OUT)/obj/%.o)
# The fuzz harnesses (tests/fuzz/fuzz_NAME.c, docs/fuzzing.md) are also
# compiled into the test binary, entry point renamed wpfuzz_NAME, so that
# `make test` replays every seed and regression input through each of them.
FUZZ_SRC   := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES := $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_REPLAY_OBJ := $(FUZZ_SRC:%.c=$(OUT)/obj/%.o) $(OUT)/obj/tests/fuzz/replay.o

LIB   := $(OUT)/libwpack.a
WPACK := $(OUT)/wpack
TESTS := $(OUT)/wpack-tests

.PHONY: all deps test demo clean bench-tools install uninstall fuzz fuzz-bins fuzz-run fuzz-seeds
all: deps $(WPACK) $(TESTS)

deps:
	@sh scripts/deps.sh $(if $(findstring clang,$(CC)),clang)

$(OUT)/obj/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(OUT)/obj/tests/fuzz/fuzz_%.o: tests/fuzz/fuzz_%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLVMFuzzerTestOneInput=wpfuzz_$* -c $< -o $@

$(OUT)/gen/profiles.c: $(PROFILES) scripts/embed.sh
	@mkdir -p $(dir $@)
	sh scripts/embed.sh $(PROFILES) > $@

$(OUT)/obj/gen/profiles.o: $(OUT)/gen/profiles.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(WPACK): $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(TESTS): $(TEST_OBJ) $(FUZZ_REPLAY_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) $(FUZZ_REPLAY_OBJ) $(LIB) $(LDLIBS)

# T=substring runs only the tests whose name contains it; J=N runs N at once.
# The install test re-enters this Makefile on the build under test (same
# BUILD and SAN: nothing is rebuilt) and links a program against the
# installed library with the same LDFLAGS (the sanitizers under SAN=1).
test: all
	WPACK_BIN=$(WPACK) WPT_MAKE_ARGS='BUILD=$(BUILD) SAN=$(SAN)' \
	WPT_CC='$(CC)' WPT_LDFLAGS='$(LDFLAGS)' $(TESTS) $(if $(J),-j $(J)) $(T)

demo: all
	@sh scripts/demo.sh $(WPACK)

clean:
	rm -rf build build-san build-* 

# ---- fuzzing (docs/fuzzing.md) ---------------------------------------------
# `make fuzz` builds one libFuzzer binary per harness with clang
# (-fsanitize=fuzzer,address,undefined) against the library compiled with
# the same sanitizers, in $(FUZZ_BUILD)-san/fuzz/.  `make fuzz-run` runs each
# in turn for FUZZ_SECONDS (FUZZ=name1,name2 picks some) and prints
# executions and findings per harness.  Never part of `make test` or CI,
# which replay the seeds instead.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
FUZZ         ?=

fuzz:
	@sh scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory SAN=1 CC=clang BUILD=$(FUZZ_BUILD) \
	    OPT='-O1 -g -fsanitize=fuzzer-no-link' fuzz-bins

fuzz-bins: $(FUZZ_NAMES:%=$(OUT)/fuzz/fuzz_%)

$(OUT)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_util.h $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer $< $(LIB) $(LDLIBS) -o $@

# The seed corpora tests/fuzz/corpus/ are committed; this rewrites them
# (after adding a seed to tests/fuzz/mkseeds.c).
fuzz-seeds: $(OUT)/fuzz-mkseeds
	$(OUT)/fuzz-mkseeds

$(OUT)/fuzz-mkseeds: tests/fuzz/mkseeds.c $(OUT)/obj/tests/wpk_zoo.o $(LIB)
	$(CC) $(CFLAGS) $< $(OUT)/obj/tests/wpk_zoo.o $(LIB) $(LDLIBS) -o $@

fuzz-run: fuzz
	@sh tests/fuzz/run.sh $(FUZZ_BUILD)-san '$(FUZZ_SECONDS)' '$(FUZZ)'

# ---- install ---------------------------------------------------------------
# The man page and the bash completion are generated by the command itself
# from its option tables, so they cannot drift from what it accepts.
PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
MANDIR      ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
PCDIR       ?= $(LIBDIR)/pkgconfig
VERSION     := $(shell sed -n 's/^\#define WP_VERSION "\(.*\)"/\1/p' common/wp.h)

# Public headers: every header of the library folders but the private ones;
# they include each other as "common/wp.h", hence include/wpack/<folder>/.
PUB_HDR  := $(filter-out %/internal.h %_priv.h %_internal.h,$(sort $(wildcard $(addsuffix /*.h,$(MODULES)))))
INST_HDR := $(PUB_HDR:%=$(DESTDIR)$(INCLUDEDIR)/wpack/%)
INST_FILES := $(DESTDIR)$(BINDIR)/wpack $(DESTDIR)$(LIBDIR)/libwpack.a \
              $(DESTDIR)$(MANDIR)/man1/wpack.1 $(DESTDIR)$(BASHCOMPDIR)/wpack \
              $(DESTDIR)$(PCDIR)/wpack.pc $(INST_HDR)

# wpack.pc names its directories relative to ${prefix} where they lie under
# it, so `pkg-config --define-variable=prefix=$DESTDIR/usr/local` relocates it.
PC_LIBDIR     = $(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))
PC_INCLUDEDIR = $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))

$(OUT)/wpack.1: $(WPACK)
	$(WPACK) help --man > $@.tmp && mv $@.tmp $@

$(OUT)/wpack.bash: $(WPACK)
	$(WPACK) help --completion bash > $@.tmp && mv $@.tmp $@

install: deps $(WPACK) $(LIB) $(OUT)/wpack.1 $(OUT)/wpack.bash wpack.pc.in
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PCDIR) \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(BASHCOMPDIR) \
	    $(addprefix $(DESTDIR)$(INCLUDEDIR)/wpack/,$(sort $(dir $(PUB_HDR))))
	install -m 755 $(WPACK) $(DESTDIR)$(BINDIR)/wpack
	install -m 644 $(LIB) $(DESTDIR)$(LIBDIR)/libwpack.a
	install -m 644 $(OUT)/wpack.1 $(DESTDIR)$(MANDIR)/man1/wpack.1
	install -m 644 $(OUT)/wpack.bash $(DESTDIR)$(BASHCOMPDIR)/wpack
	for h in $(PUB_HDR); do install -m 644 $$h $(DESTDIR)$(INCLUDEDIR)/wpack/$$h || exit 1; done
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(PC_LIBDIR)|g' -e 's|@INCLUDEDIR@|$(PC_INCLUDEDIR)|g' \
	    -e 's|@VERSION@|$(VERSION)|g' wpack.pc.in > $(DESTDIR)$(PCDIR)/wpack.pc
	chmod 644 $(DESTDIR)$(PCDIR)/wpack.pc

# Files first, then the header folders install created if they are now empty
# (never a shared directory such as bin/ or lib/pkgconfig/).
uninstall:
	rm -f $(INST_FILES)
	-rmdir $(addprefix $(DESTDIR)$(INCLUDEDIR)/wpack/,$(sort $(dir $(PUB_HDR)))) 2>/dev/null
	-rmdir $(DESTDIR)$(INCLUDEDIR)/wpack 2>/dev/null

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(FUZZ_REPLAY_OBJ:.o=.d)
