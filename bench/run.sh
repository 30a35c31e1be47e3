#!/bin/sh
# bench/run.sh — reference runtime throughput on tiny-a: prefill tokens/s (one
# 253-token prompt from position 0) and decode tokens/s (greedy, one token at a
# time after it), with 1 and 2 threads, best of REPS runs.  Prints measured
# figures only; nothing here is a pass/fail test.
#
#   sh bench/run.sh [WPACK] [REPS]
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
for T in 1 2; do
    : > "$TMP/pre"; : > "$TMP/dec"
    i=0
    while [ $i -lt "$REPS" ]; do
        "$WPACK" run "$TINY/hf" --tokens-file "$TMP/prompt.txt" --max-new 201 --ignore-eos \
            --threads $T --json > "$TMP/out.json"
        num prefill_tokens_per_s "$TMP/out.json" >> "$TMP/pre"
        num decode_tokens_per_s "$TMP/out.json" >> "$TMP/dec"
        i=$((i + 1))
    done
    k=$(sed -n 's/.*"kernels":[[:space:]]*"\([a-z0-9]*\)".*/\1/p' "$TMP/out.json" | head -1)
    printf 'threads %d (%s kernels): prefill %8.1f tokens/s   decode %8.1f tokens/s\n' \
        $T "$k" "$(best < "$TMP/pre")" "$(best < "$TMP/dec")"
done

# ---- a V4-Flash-shaped layer (wpack synth) ----------------------------------------------
# Decode time per token of one layer against the bytes of weights that step reads, as a
# fraction of measured memory read bandwidth.  Needs ~5 GB in $TMPDIR (4 Flash-shaped
# layers with 32 routed experts each: layer 0 sliding window, 2 CSA, 3 HCA); skip with
# SKIP_FLASH=1.  Routed-expert count does not change the bytes a decode step reads (6 of
# them + the shared expert), only the checkpoint size.
[ "${SKIP_FLASH:-0}" = 1 ] && exit 0
LIB=$(dirname "$WPACK")/libwpack.a
cc -O2 -std=c11 -D_GNU_SOURCE -pthread -I. bench/rt_layer.c "$LIB" \
    -lzstd -lcrypto -lcjson -lhugetlbfs -lpthread -lm -o "$TMP/rt_layer"
"$WPACK" synth --preset flash --layers 4 --experts 32 -o "$TMP/flash" > /dev/null
echo "V4-Flash-shaped layers (synthetic weights), 256 positions prefilled, 40 decode steps:"
for L in 0 2 3; do
    for T in 1 2; do
        "$TMP/rt_layer" "$TMP/flash" $L 256 40 $T
    done
done
