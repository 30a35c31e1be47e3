#!/bin/sh
# bench/pack.sh — `wpack pack` / `wpack unpack` next to `zstd -T2` / `zstd -d`
# on the same bytes, interleaved in one run so the ratios hold on a noisy
# shared machine; optionally next to another wpack (BASE, e.g. main's) too.
#
#   sh bench/pack.sh [BUILD]   a build directory; default: a synthetic one of SIZE_MB
#   env: WPACK=build/wpack  BASE=  (a second wpack binary, e.g. main's, run in the same rounds)
#        SIZE_MB=1024  LEVEL=3  THREADS=2  RUNS=2  WORK=${TMPDIR:-/tmp}/wpack-bench-pack.PID
#
# One line per run of each tool: wall seconds, user + sys CPU seconds, GB/s
# of raw build bytes (1e9 bytes/s) by wall and by CPU second, and the load
# average when it started; then per run the ratios to zstd (wall speed:
# zstd's wall / the tool's wall; > 1 is faster than zstd).
# wpack fsyncs every output before naming it (never a partial output);
# zstd here does not, so the comparison is the harsher one for wpack.
# The synthetic build (bench/wpk_synth.c: Gaussian weights encoded as MXFP4
# experts / FP8 / BF16, like V4's mix) gives indicative ratios; bench/speed.sh
# has the same rows on a real-shaped build.  Inputs are in the page cache for
# every run (cached throughput).
set -eu
cd "$(dirname "$0")/.."
WPACK=${WPACK:-build/wpack}
BASE=${BASE:-}
SIZE_MB=${SIZE_MB:-1024}
LEVEL=${LEVEL:-3}
THREADS=${THREADS:-2}
RUNS=${RUNS:-2}
DIR=${WORK:-${TMPDIR:-/tmp}/wpack-bench-pack.$$}
trap 'rm -rf "$DIR"' EXIT INT TERM
mkdir -p "$DIR"
[ -x "$WPACK" ] || { echo "bench/pack.sh: $WPACK not built (make first)" >&2; exit 2; }

if [ $# -ge 1 ]; then
    B=$1
else
    B=$DIR/build
    mkdir -p "$B"
    LIB=$(dirname "$WPACK")/libwpack.a
    LIBS="-lzstd -lcrypto -lcjson -lhugetlbfs -lpthread -lm"
    cc -O2 -std=c11 -D_GNU_SOURCE -I. bench/wpk_synth.c "$LIB" $LIBS -o "$DIR/wpk_synth"
    "$DIR/wpk_synth" "$B/model.wpk" "$SIZE_MB"
fi
ALL=$(cat "$B"/* | wc -c)
free_kb=$(df -Pk "$DIR" | awk 'NR == 2 { print $4 }')
[ "$free_kb" -gt $((ALL / 1024 * 3)) ] || { echo "bench/pack.sh: need 3x the build free in $DIR" >&2; exit 2; }

# run NAME CMD...: one timed command; prints the row, leaves "wall cpu" in $DIR/last
run() {
    name=$1; shift
    load=$(cut -d' ' -f1 /proc/loadavg)
    /usr/bin/time -f '%e %U %S' -o "$DIR/t" "$@" >/dev/null 2>"$DIR/err" ||
        { cat "$DIR/err" >&2; echo "bench/pack.sh: $name failed" >&2; exit 1; }
    set -- $(tail -n 1 "$DIR/t")
    awk -v n="$name" -v w="$1" -v u="$2" -v s="$3" -v b="$ALL" -v l="$load" 'BEGIN {
        c = u + s; printf "%-22s %7.2f s  %6.2f + %5.2f s CPU  %6.3f GB/s  %6.3f GB/CPU-s  load %s\n",
        n, w, u, s, b / w / 1e9, (c > 0 ? b / c / 1e9 : 0), l }'
    echo "$1 $(awk -v u="$2" -v s="$3" 'BEGIN { print u + s }')" > "$DIR/last"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b / a }'; }   # ratio WALL PEER_WALL

echo "== $(nproc) cores, zstd $(zstd --version | sed 's/.* v\([0-9.]*\).*/\1/') level $LEVEL, $THREADS threads, $(awk -v b="$ALL" 'BEGIN { printf "%.2f", b / 1e9 }') GB in $B, $RUNS runs"
cat "$B"/* > /dev/null
r=1
while [ "$r" -le "$RUNS" ]; do
    rm -rf "$DIR/new.wpkz" "$DIR/base.wpkz" "$DIR/z.zst"
    # pack: zstd, this wpack, the base wpack, in turn
    run "zstd -T$THREADS -$LEVEL" sh -c "cat $B/* | zstd -q -T$THREADS -$LEVEL -c > $DIR/z.zst"; zw=$(cut -d' ' -f1 "$DIR/last")
    run "wpack pack" "$WPACK" pack "$B" -o "$DIR/new.wpkz" --level "$LEVEL" --threads "$THREADS" -q; nw=$(cut -d' ' -f1 "$DIR/last")
    line="run $r pack / zstd:   wpack $(ratio "$nw" "$zw")"
    if [ -n "$BASE" ]; then
        run "base pack" "$BASE" pack "$B" -o "$DIR/base.wpkz" --level "$LEVEL" --threads "$THREADS" -q; bw=$(cut -d' ' -f1 "$DIR/last")
        cmp -s "$DIR/new.wpkz" "$DIR/base.wpkz" && same="byte-identical" || same="DIFFERENT"
        line="$line  base $(ratio "$bw" "$zw")  (archives $same)"
        rm -f "$DIR/base.wpkz"
    fi
    echo "$line; .wpkz $(stat -c %s "$DIR/new.wpkz") bytes (ratio $(awk -v a="$ALL" -v b="$(stat -c %s "$DIR/new.wpkz")" 'BEGIN { printf "%.4f", a / b }')), zstd $(stat -c %s "$DIR/z.zst") bytes (ratio $(awk -v a="$ALL" -v b="$(stat -c %s "$DIR/z.zst")" 'BEGIN { printf "%.4f", a / b }'))"
    # unpack: zstd -d, this wpack, the base wpack (every file's sha256 checked, fsynced)
    cat "$DIR/z.zst" "$DIR/new.wpkz" > /dev/null
    run "zstd -d -T$THREADS" sh -c "zstd -q -d -T$THREADS -c $DIR/z.zst > $DIR/z.out"; zw=$(cut -d' ' -f1 "$DIR/last")
    rm -f "$DIR/z.out"
    run "wpack unpack" "$WPACK" unpack "$DIR/new.wpkz" -o "$DIR/restored" --threads "$THREADS" -q; nw=$(cut -d' ' -f1 "$DIR/last")
    for f in "$B"/*; do cmp -s "$f" "$DIR/restored/$(basename "$f")" || { echo "bench/pack.sh: restored $(basename "$f") differs" >&2; exit 1; }; done
    rm -rf "$DIR/restored"
    line="run $r unpack / zstd -d: wpack $(ratio "$nw" "$zw")"
    if [ -n "$BASE" ]; then
        run "base unpack" "$BASE" unpack "$DIR/new.wpkz" -o "$DIR/restored" --threads "$THREADS" -q; bw=$(cut -d' ' -f1 "$DIR/last")
        rm -rf "$DIR/restored"
        line="$line  base $(ratio "$bw" "$zw")"
    fi
    echo "$line  (restored build byte-identical)"
    r=$((r + 1))
done
