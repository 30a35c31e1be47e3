#!/bin/sh
# bench/run.sh — reference runtime throughput.  Prints measured figures only;
# nothing here is a pass/fail test.
#
#   sh bench/run.sh [WPACK] [REPS]
#
# 1. tiny-a: prefill tokens/s (one 253-token prompt from position 0) and decode
#    tokens/s (greedy, one token at a time after it), 1 and 2 threads, best of
#    REPS runs; the runs alternate 1 and 2 threads so both see the same load, and
#    the 2-thread figures are also printed as a ratio to the 1-thread ones.
# 2. V4-Flash-shaped layers (bench/rt_layer.c): one decode step of a sliding-window,
#    a CSA and an HCA layer against the bytes it reads, as a fraction of the memory
#    read bandwidth sampled right after each step; prefill tokens/s of the same layer.
#    FLASH=DIR reuses a checkpoint (`wpack synth --preset flash --layers 4 --experts 32`)
#    instead of writing one (~5 GB in $TMPDIR); SKIP_FLASH=1 skips this part.
# 3. the decode products alone (bench/rt_kernels.sh), CPU seconds, best of ROUNDS_KERNELS (3).
set -eu
WPACK=${1:-build/wpack}
REPS=${2:-5}
TINY=tests/fixtures/tiny-a
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT INT TERM

# the golden prompt 0 as the benchmark prompt (253 tokens)
python3 - "$TINY/golden-fp32.safetensors" > "$TMP/prompt.txt" <<'PY'
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
t = json.loads(b[8:8 + n])['tokens']
s, e = t['data_offsets']
v = struct.unpack('<%di' % ((e - s) // 4), b[8 + n + s:8 + n + e])
print(' '.join(map(str, v[:253])))
PY

num() { sed -n "s/.*\"$1\":[[:space:]]*\([0-9.e+-]*\).*/\1/p" "$2" | head -1; }
best() { sort -g | tail -1; }

echo "tiny-a: $(wc -w < "$TMP/prompt.txt") prompt tokens, 200 greedy decode steps, best of $REPS"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for T in 1 2; do : > "$TMP/pre$T"; : > "$TMP/dec$T"; done
i=0
while [ $i -lt "$REPS" ]; do
    for T in 1 2; do
        "$WPACK" run "$TINY/hf" --tokens-file "$TMP/prompt.txt" --max-new 201 --ignore-eos \
            --threads $T --json > "$TMP/out.json"
        num prefill_tokens_per_s "$TMP/out.json" >> "$TMP/pre$T"
        num decode_tokens_per_s "$TMP/out.json" >> "$TMP/dec$T"
    done
    i=$((i + 1))
done
k=$(sed -n 's/.*"kernels":[[:space:]]*"\([a-z0-9]*\)".*/\1/p' "$TMP/out.json" | head -1)
for T in 1 2; do
    printf 'threads %d (%s kernels): prefill %8.1f tokens/s   decode %8.1f tokens/s\n' \
        $T "$k" "$(best < "$TMP/pre$T")" "$(best < "$TMP/dec$T")"
done
printf '2 threads / 1 thread: prefill %.2f, decode %.2f\n' \
    "$(echo "$(best < "$TMP/pre2") / $(best < "$TMP/pre1")" | bc -l)" \
    "$(echo "$(best < "$TMP/dec2") / $(best < "$TMP/dec1")" | bc -l)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# Wake-ups behind the 2-thread decode figure, which timing on a loaded machine cannot show:
# futex calls and context switches of a 3-token prompt + 200 decode steps (perf, where the
# kernel allows it).  A decode whose jobs all stay on the caller makes none beyond startup.
if perf stat -e task-clock true > /dev/null 2>&1; then
    echo 1,2,3 > "$TMP/short.txt"
    for T in 1 2; do
        perf stat -x, -e context-switches,syscalls:sys_enter_futex -o "$TMP/perf.txt" \
            "$WPACK" run "$TINY/hf" --tokens-file "$TMP/short.txt" --max-new 200 --ignore-eos \
            --threads $T --json > /dev/null
        cs=$(awk -F, '/context-switches/ {print $1}' "$TMP/perf.txt")
        fx=$(awk -F, '/sys_enter_futex/ {print $1}' "$TMP/perf.txt")
        echo "threads $T: 200 decode steps, $cs context switches, $fx futex calls"
    done
fi

# ---- V4-Flash-shaped layers (wpack synth) -------------------------------------------------
# Routed-expert count does not change the bytes a decode step reads (6 of them + the shared
# expert), only the checkpoint size, so 32 experts per layer keep it at ~5 GB.
[ "${SKIP_FLASH:-0}" = 1 ] && exit 0
LIB=$(dirname "$WPACK")/libwpack.a
cc -O2 -std=c11 -D_GNU_SOURCE -pthread -I. bench/rt_layer.c "$LIB" \
    -lzstd -lcrypto -lcjson -lhugetlbfs -lpthread -lm -o "$TMP/rt_layer"
FLASH=${FLASH:-}
if [ -z "$FLASH" ]; then
    FLASH=$TMP/flash
    "$WPACK" synth --preset flash --layers 4 --experts 32 -o "$FLASH" > /dev/null
fi
echo "V4-Flash-shaped layers (synthetic weights), 256 positions prefilled, 40 decode steps:"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for L in 0 2 3; do
    for T in 1 2; do
        "$TMP/rt_layer" "$FLASH" $L 256 40 $T
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

# The decode products alone, in CPU seconds (bench/rt_kernels.sh; give it a second
# libwpack.a to compare two builds side by side).
ROUNDS=${ROUNDS_KERNELS:-3} sh bench/rt_kernels.sh "$LIB"
