#!/bin/sh
# bench/pack.sh — `wpack pack` / `wpack unpack` throughput next to `zstd -T2`
# on the same bytes.
#
#   sh bench/pack.sh            (SIZE_MB=1024 LEVEL=3 THREADS=2 by default)
#
# The build is synthetic (bench/wpk_synth.c: Gaussian weights encoded as
# MXFP4 experts / FP8 / BF16, like V4's mix), so ratios are indicative of real
# weights; pack also prints the ratio per encoding.  Files are in the page
# cache for every run (cached throughput).  bench/speed.sh has the same
# figures next to their peers on a real-shaped build.
set -eu
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-1024}
BUILD=${BUILD:-build-bench}
LEVEL=${LEVEL:-3}
THREADS=${THREADS:-2}
DIR=${TMPDIR:-/tmp}/wpack-bench-pack.$$
trap 'rm -rf "$DIR"' EXIT INT TERM
mkdir -p "$DIR/build"

make -s -j2 BUILD="$BUILD" "$BUILD/wpack" "$BUILD/libwpack.a" >/dev/null
LIBS="-lzstd -lcrypto -lcjson -lhugetlbfs -lpthread -lm"
cc -O2 -std=c11 -D_GNU_SOURCE -I. bench/wpk_synth.c "$BUILD/libwpack.a" $LIBS -o "$DIR/wpk_synth"
"$DIR/wpk_synth" "$DIR/build/model.wpk" "$SIZE_MB"
BYTES=$(stat -c %s "$DIR/build/model.wpk")
cat "$DIR/build/model.wpk" > /dev/null   # page cache

now() { date +%s.%N; }
rate() { echo "scale=3; $BYTES / ($2 - $1) / 1000000000" | bc; }

echo "== $(nproc) cores, zstd level $LEVEL, $THREADS threads, $(echo "scale=2; $BYTES/1073741824" | bc) GiB"
t0=$(now); "$BUILD/wpack" pack "$DIR/build" -o "$DIR/b.wpkz" --level "$LEVEL" --threads "$THREADS"; t1=$(now)
echo "wpack pack:    $(rate "$t0" "$t1") GB/s"
t0=$(now); "$BUILD/wpack" unpack "$DIR/b.wpkz" -o "$DIR/restored" --threads "$THREADS" > /dev/null; t1=$(now)
echo "wpack unpack:  $(rate "$t0" "$t1") GB/s (every file's sha256 checked)"
cmp "$DIR/build/model.wpk" "$DIR/restored/model.wpk" && echo "restored build is byte-identical"
t0=$(now); zstd -q -T"$THREADS" -"$LEVEL" "$DIR/build/model.wpk" -o "$DIR/z.zst"; t1=$(now)
echo "zstd -T$THREADS -$LEVEL:    $(rate "$t0" "$t1") GB/s, ratio $(echo "scale=3; $BYTES / $(stat -c %s "$DIR/z.zst")" | bc)"
t0=$(now); zstd -q -d "$DIR/z.zst" -o "$DIR/z.out"; t1=$(now)
echo "zstd -d:       $(rate "$t0" "$t1") GB/s"
echo "wpack .wpkz:   $(stat -c %s "$DIR/b.wpkz") bytes, zstd file: $(stat -c %s "$DIR/z.zst") bytes"
