# wpack — one static library (libwpack.a) from the modules, the `wpack` command
# from cli/, one test runner from tests/.  Sources are found by wildcard so a new
# file in a module needs no Makefile edit.
#
#   make            build        make test     build + run every test
#   make SAN=1 ...  ASan+UBSan   make demo     the tiny-a walk-through
#   make BUILD=dir  out-of-tree build directory (default: build, build-san)
#   make WERROR=    drop -Werror (local hacking only; CI keeps it)

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

LIB   := $(OUT)/libwpack.a
WPACK := $(OUT)/wpack
TESTS := $(OUT)/wpack-tests

.PHONY: all deps test demo clean bench-tools
all: deps $(WPACK) $(TESTS)

deps:
	@sh scripts/deps.sh

$(OUT)/obj/%.o: %.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

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

$(TESTS): $(TEST_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(TEST_OBJ) $(LIB) $(LDLIBS)

# T=substring runs only the tests whose name contains it.
test: all
	WPACK_BIN=$(WPACK) $(TESTS) $(T)

demo: all
	@sh scripts/demo.sh $(WPACK)

clean:
	rm -rf build build-san build-* 

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
