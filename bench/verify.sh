#!/bin/sh
# bench/verify.sh — `wpack verify` throughput on a >= 4 GB build, cached and
# cold, each figure next to its limit measured in the same run:
#   cached: `openssl speed sha256` (one core, 16 KiB blocks) x threads, in wall
#           time, and per CPU-second (user + sys: what the engine costs,
#           whatever else runs on the machine);
#   cold:   `dd iflag=direct bs=8M` of the same files (the disk's read rate),
#           and min(dd, verify cached) (cold cannot beat cached: on a busy
#           machine the CPU share, not the disk, is the limit).
# Each row is run REPS times, interleaved with its peer (and with BASE's
# wpack when given), best of the REPS; the load average is printed per row.
#
#   sh bench/verify.sh [WORKDIR]      (default /tmp/wpack-bench-verify; the build is reused if present)
#   env: WPACK=build/wpack  THREADS=$(nproc)  EXPERTS=96 (size of the synthetic build)  REPS=2
#        BASE=PATH     another wpack (e.g. main's) measured in the same rows, interleaved
#        MODES="auto mixed" WPACK_HASH_IO values for the cold rows (auto, the default: mapped
#                      windows with read-ahead; mixed: mapped for what the page cache holds,
#                      O_DIRECT for what it does not; also map, direct, pread)
#        DROP_CACHES=1 drop the whole page cache for cold rows (root; evicts everyone's cache)
#
# The build is made once: `wpack synth --preset flash --layers 1 --experts $EXPERTS`
# (real V4-Flash shapes, random values) converted with the reference profile.
# Cold runs evict the build's own pages first (`dd iflag=nocache count=0`,
# POSIX_FADV_DONTNEED: no root needed, nobody else's cache touched).
# Prints measured figures only; nothing is asserted.
set -eu
WPACK=${WPACK:-build/wpack}
WORK=${1:-/tmp/wpack-bench-verify}
THREADS=${THREADS:-$(nproc)}
EXPERTS=${EXPERTS:-96}
REPS=${REPS:-2}
BASE=${BASE:-}
MODES=${MODES:-auto mixed}
B=$WORK/build

mkdir -p "$WORK"
if [ ! -f "$B/manifest.json" ]; then
    echo "# making the build in $WORK (once) ..."
    rm -rf "$WORK/ckpt" "$B"
    "$WPACK" synth --preset flash --layers 1 --experts "$EXPERTS" -o "$WORK/ckpt" -q >/dev/null
    "$WPACK" convert "$WORK/ckpt" -o "$B" --threads "$THREADS" -q >/dev/null
    rm -rf "$WORK/ckpt"
fi
FILES=$(ls "$B"/*.wpk)
BYTES=$(cat $FILES | wc -c)
echo "# build $B: $(echo $FILES | wc -w) .wpk file(s), $BYTES bytes; $(nproc) CPUs, $(uname -r), verify threads $THREADS"
[ "$BYTES" -ge 4000000000 ] || echo "# WARNING: build is smaller than 4 GB (raise EXPERTS)"

. "$(dirname "$0")/timing.sh"   # run, gbs, evict, cache_state
max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b) ? a : b }'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a < b) ? a : b }'; }
load() { cut -d' ' -f1 /proc/loadavg; }
row() {   # figure value peer peer_value load
    r=$(awk -v a="$2" -v b="$4" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else print "n/a" }')
    printf '%-34s %8s  %-30s %8s  %5s  %5s\n' "$1" "$2" "$3" "$4" "$r" "$5"
}

one=$(openssl speed -seconds 3 -bytes 16384 sha256 2>/dev/null | awk '/^sha256/ { v = $NF; sub(/k$/, "", v); printf "%.3f", v * 1000 / 1e9 }')
cores=$(awk -v a="$one" -v n="$THREADS" 'BEGIN { printf "%.3f", a * n }')
echo "# openssl speed sha256 (16 KiB): $one GB/s one core (per CPU-second); x $THREADS = $cores GB/s"
printf '%-34s %8s  %-30s %8s  %5s  %5s\n' figure GB/s peer/limit GB/s ratio load

# ---- cached --------------------------------------------------------------------------
# evicted, then read once: the page cache as a copy or a download leaves a file (large
# folios; what was cached before may be 4 KiB pages from an earlier cold verify, which
# cost the kernel more to map: docs/performance.md "Issue 14, fifth round")
evict
cat $FILES > /dev/null
echo "# before the cached rows: $(cache_state)"
for tool in "$WPACK" $BASE; do
    name=wpack; [ "$tool" = "$WPACK" ] || name=base
    for deep in "" --deep; do
        bw=0 bc=0 l=$(load) hashed=$BYTES
        [ -z "$deep" ] || hashed=$((2 * BYTES))   # --deep hashes every byte twice (tensors, shards)
        for i in $(seq "$REPS"); do
            set -- $(run "$tool" verify "$B" --allow-unsigned --threads "$THREADS" -q $deep)
            bw=$(max "$bw" "$(gbs "$hashed" "$1")"); bc=$(max "$bc" "$(gbs "$hashed" "$2")")
        done
        [ "$name$deep" = wpack ] && cached_wall=$bw
        row "$name verify cached $deep" "$bw" "openssl 1 core x $THREADS" "$cores" "$l"
        row "$name verify cached $deep /CPU-s" "$bc" "openssl per CPU-s" "$one" "$l"
    done
done
echo "# after the cached rows: $(cache_state)"

# ---- cold ----------------------------------------------------------------------------
# dd iflag=direct is measured beside each verify run (interleaved), best of REPS
dd_best=0
dd_once() {
    evict
    t=0
    for f in $FILES; do
        set -- $(run dd if="$f" of=/dev/null bs=8M iflag=direct status=none)
        t=$(awk -v a="$t" -v b="$1" 'BEGIN { print a + b }')
    done
    dd_best=$(max "$dd_best" "$(gbs "$BYTES" "$t")")
}
for tool in "$WPACK" $BASE; do
    name=wpack; [ "$tool" = "$WPACK" ] || name=base
    for mode in $MODES; do
        [ "$name" = base ] && [ "$mode" != auto ] && continue   # base has one way
        bw=0 bc=0 l=$(load)
        for i in $(seq "$REPS"); do
            dd_once
            evict
            set -- $(run env WPACK_HASH_IO="$mode" "$tool" verify "$B" --allow-unsigned --threads "$THREADS" -q)
            bw=$(max "$bw" "$(gbs "$BYTES" "$1")"); bc=$(max "$bc" "$(gbs "$BYTES" "$2")")
        done
        label="$name verify cold"; [ "$name" = base ] || label="$label ($mode)"
        row "$label" "$bw" "dd iflag=direct (disk)" "$dd_best" "$l"
        row "$label vs min(dd, cached)" "$bw" "min(dd direct, verify cached)" "$(min "$dd_best" "$cached_wall")" "$l"
        row "$label /CPU-s" "$bc" "openssl per CPU-s" "$one" "$l"
    done
done
echo "# cold --deep (every byte twice: tensors and shards read through the page cache)"
bw=0 l=$(load)
for i in $(seq "$REPS"); do
    evict
    set -- $(run "$WPACK" verify "$B" --allow-unsigned --threads "$THREADS" -q --deep)
    bw=$(max "$bw" "$(gbs "$BYTES" "$1")")
done
row "wpack verify cold --deep" "$bw" "dd iflag=direct (disk)" "$dd_best" "$l"
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
