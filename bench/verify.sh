#!/bin/sh
# bench/verify.sh — `wpack verify` throughput on a >= 4 GB build, cached and
# cold, next to what the same machine can hash: `openssl speed sha256` (one
# core x cores, and -multi) and coreutils `sha256sum` over the same bytes.
#
#   bench/verify.sh [WORKDIR]      (default /tmp/wpack-bench-verify; reused if present)
#   env: WPACK=build/wpack  THREADS=$(nproc)  EXPERTS=96 (size of the synthetic build)
#
# The build is made once: `wpack synth --preset flash --layers 1 --experts $EXPERTS`
# (real V4-Flash shapes, random values) converted with the reference profile.
# Cold runs evict the build's own pages first (`dd iflag=nocache count=0`,
# POSIX_FADV_DONTNEED: no root needed, nobody else's cache touched); with
# DROP_CACHES=1 (root) the whole page cache is dropped instead.
# Prints measured figures only; nothing is asserted.
set -eu
WPACK=${WPACK:-build/wpack}
WORK=${1:-/tmp/wpack-bench-verify}
THREADS=${THREADS:-$(nproc)}
EXPERTS=${EXPERTS:-96}
B=$WORK/build

now() { date +%s.%N; }
rate() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.2f", b / t / 1e9 }'; }
json_num() { sed -n "s/.*\"$1\":[[:space:]]*\([0-9.e+-]*\).*/\1/p" | head -1; }

mkdir -p "$WORK"
if [ ! -f "$B/manifest.json" ]; then
    echo "making the build in $WORK (once) ..."
    rm -rf "$WORK/ckpt" "$B"
    "$WPACK" synth --preset flash --layers 1 --experts "$EXPERTS" -o "$WORK/ckpt" >/dev/null
    "$WPACK" convert "$WORK/ckpt" -o "$B" --threads "$THREADS" >/dev/null
    rm -rf "$WORK/ckpt"
fi
BYTES=$(cat "$B"/*.wpk | wc -c)
NT=$(grep -o '"name":' "$B/manifest.json" | wc -l)
echo "build: $B: $(ls "$B"/*.wpk | wc -l) .wpk file(s), $NT tensors, $BYTES bytes ($(rate "$BYTES" 1) GB)"
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); verify threads: $THREADS"
[ "$BYTES" -ge 4000000000 ] || echo "WARNING: build is smaller than 4 GB (raise EXPERTS)"

# openssl: the SHA-256 rate of one core on 16 KiB blocks (kB/s, k = 1000)
one=$(openssl speed -seconds 3 -bytes 16384 sha256 2>/dev/null | awk '/^sha256/ { v = $NF; sub(/k$/, "", v); print v * 1000 }')
multi=$(openssl speed -seconds 3 -bytes 16384 -multi "$(nproc)" sha256 2>/dev/null |
        awk '/^sha256/ { v = $NF; sub(/k$/, "", v); print v * 1000 }' | tail -1)
cores=$(awk -v a="$one" -v n="$(nproc)" 'BEGIN { print a * n }')
echo "openssl speed sha256 (16 KiB): $(rate "$one" 1) GB/s one core; x $(nproc) cores = $(rate "$cores" 1) GB/s; -multi $(nproc): $(rate "${multi:-0}" 1) GB/s"

drop() {
    sync
    if [ "${DROP_CACHES:-0}" = 1 ]; then echo 3 > /proc/sys/vm/drop_caches
    else for f in "$B"/*; do dd if="$f" iflag=nocache count=0 status=none; done; fi
}

cat "$B"/*.wpk > /dev/null   # warm the page cache
t0=$(now); cat "$B"/*.wpk | sha256sum > /dev/null; t1=$(now)
s_cached=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
echo "sha256sum, cached:            $(rate "$BYTES" "$s_cached") GB/s ($s_cached s)"

run_verify() {   # $1 = label, rest = extra flags
    label=$1; shift
    t0=$(now)
    out=$("$WPACK" verify "$B" --allow-unsigned --threads "$THREADS" --json "$@")
    t1=$(now)
    hashed=$(echo "$out" | json_num bytes_hashed)
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    echo "wpack verify $label $(rate "$hashed" "$wall") GB/s ($hashed bytes hashed, $wall s wall)"
    LAST=$(rate "$hashed" "$wall")
}
run_verify "cached:        "
v_cached=$LAST
run_verify "cached --deep: " --deep
if drop; then
    run_verify "cold:          "
    drop
    t0=$(now); cat "$B"/*.wpk | sha256sum > /dev/null; t1=$(now)
    s_cold=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    echo "sha256sum, cold:              $(rate "$BYTES" "$s_cold") GB/s"
else
    echo "cold-cache runs skipped (cannot evict the build's pages)"
fi
awk -v v="$v_cached" -v c="$cores" -v s="$(rate "$BYTES" "$s_cached")" 'BEGIN {
    printf "ratios (cached): verify / (openssl x cores) = %.2f (target >= 0.9); verify / sha256sum = %.1fx (target >= 5)\n",
           v * 1e9 / c, v / s }'
