#!/bin/sh
# bench/realsize.sh — the reference runtime on a build larger than memory: a synthetic
# V4-Flash-shaped checkpoint of LAYERS layers (6: ~27 GB) converted with the reference
# profile, then `wpack run` (prefill + decode tokens/s, peak RSS: anonymous memory and
# the total with mapped weights, read-ahead on as it is by default above half the RAM),
# and, when this wpack has them (`wpack help golden` exits 0), `golden` and
# `parity --against`.  The disk read rate (dd iflag=direct) and the RAM are measured in
# the same run, because with weights larger than RAM the disk bounds prefill and decode.
# Prints measured figures only; nothing here is a pass/fail test.
#
#   sh bench/realsize.sh [WPACK] [DIR]
#
# DIR (default $TMPDIR/wpack-realsize) receives the checkpoint and the build; the
# checkpoint is deleted as soon as the build exists (KEEP_CKPT=1 keeps it), and
# everything under DIR that this script made is deleted at the end unless KEEP=1.
# BUILD=path skips synth+convert and uses an existing build (or checkpoint).  Needs ~2x
# the build size free on DIR's disk while converting (checked first); FORM=checkpoint
# skips the conversion and runs the synthetic checkpoint itself (~1x: the runtime maps
# an HF checkpoint's shards exactly as it maps a build's .wpk parts, but nothing is
# verified, a checkpoint has no digests).
#   LAYERS=6 PROMPT=32 NEW=4 THREADS=$(nproc) FORM=build SKIP_STREAM=0 (1: skip the
# read-ahead off/on comparison, four cold runs)
# Run from the repository root (it builds bench/rt_stream.c against WPACK's libwpack.a).
set -eu
WPACK=${1:-build/wpack}
DIR=${2:-${TMPDIR:-/tmp}/wpack-realsize}
LAYERS=${LAYERS:-6}
PROMPT=${PROMPT:-32}
NEW=${NEW:-4}
THREADS=${THREADS:-$(nproc)}
BUILD=${BUILD:-}
FORM=${FORM:-build}
mkdir -p "$DIR"
made_ck=0 made_b=0
cleanup() {
    [ "${KEEP:-0}" = 1 ] && return 0
    [ $made_ck = 1 ] && rm -rf "$DIR/ck"
    [ $made_b = 1 ] && rm -rf "$DIR/b"
    rm -f "$DIR/run.json" "$DIR/run.time" "$DIR/run.rss" "$DIR/prompt.txt" "$DIR/golden.safetensors"
    return 0
}
trap cleanup EXIT INT TERM

gib() { echo "scale=1; $1 / 1073741824" | bc -l; }
num() { sed -n "s/.*\"$1\":[[:space:]]*\([0-9.e+-]*\).*/\1/p" "$2" | head -1; }
mem_total=$(awk '/^MemTotal:/ {printf "%.0f", $2 * 1024}' /proc/meminfo)
echo "machine: $(nproc) CPUs, $(gib "$mem_total") GiB RAM; load average $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -z "$BUILD" ]; then
    # ~3.6 GB per Flash layer (256 experts) + 2.1 GB embed and head + 3.6 GB MTP block,
    # twice while the checkpoint and the build both exist
    need=$(( (LAYERS * 36 + 57) * 100000000 ))
    [ "$FORM" = build ] && need=$((need * 2))
    avail=$(df -B1 --output=avail "$DIR" | tail -1)
    if [ "$avail" -lt "$need" ]; then
        echo "realsize: $DIR: $(gib "$avail") GiB free, converting $LAYERS layers needs ~$(gib "$need") GiB" >&2
        exit 2
    fi
    t0=$(date +%s)
    "$WPACK" synth --preset flash --layers "$LAYERS" -o "$DIR/ck" -q
    made_ck=1
    t1=$(date +%s)
    echo "synth $LAYERS layers: $((t1 - t0)) s"
    if [ "$FORM" = build ]; then
        "$WPACK" convert "$DIR/ck" -o "$DIR/b" --profile reference -q
        made_b=1
        t2=$(date +%s)
        echo "convert --profile reference: $((t2 - t1)) s"
        if [ "${KEEP_CKPT:-0}" != 1 ]; then rm -rf "$DIR/ck"; made_ck=0; fi
        BUILD=$DIR/b
    else
        BUILD=$DIR/ck
    fi
fi
bytes=$(du -sb "$BUILD" | cut -f1)
echo "build: $BUILD, $(gib "$bytes") GiB = $(echo "scale=2; $bytes / $mem_total" | bc -l) x RAM"

# disk read rate: O_DIRECT (no page cache) over the first 4 GiB of the largest part
part=$(ls -S "$BUILD"/*.wpk "$BUILD"/*.safetensors 2>/dev/null | head -1)
[ -n "$part" ] || part=$BUILD
dd if="$part" of=/dev/null bs=16M count=256 iflag=direct 2> "$DIR/dd.txt" || true
disk=$(sed -n 's/.* s, \([0-9.]*\) \([GM]B\)\/s.*/\1 \2\/s/p' "$DIR/dd.txt" | tail -1)
rm -f "$DIR/dd.txt"
echo "disk read rate (dd iflag=direct, 4 GiB): $disk"

# Peak memory of a command: /usr/bin/time's maximum RSS (mapped weight pages included)
# and the largest RssAnon seen in /proc/PID/status every 0.2 s (the runtime's own memory:
# caches, activations, the fp32 copies of norms and HC parameters).
measure() {
    : > "$DIR/run.rss"
    /usr/bin/time -v "$@" > "$DIR/run.json" 2> "$DIR/run.time" &
    tp=$!
    sleep 0.2
    pid=$(pgrep -P "$tp" | head -1 || true)
    while kill -0 "$tp" 2> /dev/null; do
        [ -n "$pid" ] && awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" >> "$DIR/run.rss" 2> /dev/null
        sleep 0.2
    done
    wait "$tp" || { echo "realsize: $* failed:"; tail -3 "$DIR/run.time"; return 1; }
    hwm=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$DIR/run.time")
    anon=$(sort -n "$DIR/run.rss" | tail -1)
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$DIR/run.time")
    echo "  wall $wall; peak RSS $(echo "scale=2; $hwm / 1048576" | bc -l) GiB (mapped weights included), peak anonymous $(echo "scale=2; ${anon:-0} / 1048576" | bc -l) GiB"
}

seq 1 "$PROMPT" | awk '{printf "%d%s", ($1 * 7919) % 500, NR == '"$PROMPT"' ? "\n" : " "}' > "$DIR/prompt.txt"
echo "wpack run: $PROMPT prompt tokens, $NEW greedy steps, $THREADS threads (digests verified first)"
measure "$WPACK" run "$BUILD" --tokens-file "$DIR/prompt.txt" --max-new "$NEW" --ignore-eos \
    --threads "$THREADS" --json
pre=$(num prefill_tokens_per_s "$DIR/run.json")
dec=$(num decode_tokens_per_s "$DIR/run.json")
printf '  prefill %.3f tokens/s, decode %.3f tokens/s\n' "$pre" "$dec"
echo "wpack run --no-verify (the same, weights now partly in the page cache):"
measure "$WPACK" run "$BUILD" --tokens-file "$DIR/prompt.txt" --max-new "$NEW" --ignore-eos \
    --threads "$THREADS" --json --no-verify
pre=$(num prefill_tokens_per_s "$DIR/run.json")
dec=$(num decode_tokens_per_s "$DIR/run.json")
printf '  prefill %.3f tokens/s, decode %.3f tokens/s\n' "$pre" "$dec"

# Read-ahead on and off (bench/rt_stream.c, no verification), each run from a page cache
# emptied of the model's files (dd iflag=nocache count=0 drops a file's clean pages), so
# both start alike; alternated, twice.
if [ "${SKIP_STREAM:-0}" != 1 ]; then
    cc -O2 -std=c11 -D_GNU_SOURCE -pthread -I. bench/rt_stream.c "$(dirname "$WPACK")/libwpack.a" \
        -lzstd -lcrypto -lcjson -lhugetlbfs -lpthread -lm -o "$DIR/rt_stream"
    echo "read-ahead off / on, $PROMPT prompt tokens and $NEW decode steps from a cold page cache:"
    for rep in 1 2; do
        for flags in 32 16; do
            for f in "$BUILD"/*.wpk "$BUILD"/*.safetensors; do
                [ -f "$f" ] && dd if="$f" iflag=nocache count=0 status=none
            done
            printf '  '
            "$DIR/rt_stream" "$BUILD" "$PROMPT" "$NEW" "$THREADS" $flags
        done
    done
    rm -f "$DIR/rt_stream"
fi

# golden and parity --against come from another change; measured only where present
if "$WPACK" help golden > /dev/null 2>&1; then
    echo "wpack golden: $PROMPT prompt tokens"
    if measure "$WPACK" golden "$BUILD" --prompts "$DIR/prompt.txt" --topk 32 \
        -o "$DIR/golden.safetensors" --threads "$THREADS" --json; then :; fi
    echo "wpack parity --against (the build against itself), per prompt token:"
    t0=$(date +%s.%N)
    if measure "$WPACK" parity "$BUILD" --against "$BUILD" --prompts "$DIR/prompt.txt" \
        --threads "$THREADS" --json; then
        t1=$(date +%s.%N)
        echo "  $(echo "scale=2; ($t1 - $t0) / $PROMPT" | bc -l) s per prompt token"
    fi
else
    echo "wpack golden: not in this wpack (help golden exits non-zero); golden and parity --against not measured"
fi
