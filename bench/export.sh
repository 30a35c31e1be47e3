#!/bin/sh
# bench/export.sh — export throughput and peak RSS next to the disk's own
# write rate on the same bytes (issue 12).
#
#   sh bench/export.sh [CKPT [WORKDIR]]
#
# Converts CKPT (default /work/big/flash-2, a >= 10 GB synthetic
# V4-Flash-shaped checkpoint: `wpack synth --preset flash --layers 2`) with
# --profile $PROFILE (reference) into WORKDIR/build, once; then, best of
# $RUNS:
#   - `wpack export --json`: GB/s of tensor data written (total_size /
#     seconds) and peak RSS (the tool's own VmHWM, peak_rss_bytes);
#   - `dd conv=fsync` writing the same number of bytes (the I/O limit);
#   - the build read once with O_DIRECT (`dd iflag=direct`: the disk, not the
#     page cache); "in+out" is the exported bytes over (read time + dd time),
#     the I/O limit of an export that overlaps nothing (an export reads and
#     hashes every byte it writes).
# DROP_CACHES=1 also drops the page cache before each timed step (system-wide:
# only on a machine of your own).  One line:
#
#   build_GB  out_GB  export_GB/s  dd_GB/s  ratio  in+out_GB/s  ratio  peak_RSS_MiB  seconds
#
# Environment: WPACK (build/wpack), PROFILE (reference), RUNS (1), THREADS
# (online CPUs), KEEP=1 to keep the build.  Needs free disk for the build and
# the export (about twice the checkpoint).  Numbers on a shared machine are
# noisy: run with nothing else going on.
set -eu

WPACK=${WPACK:-build/wpack}
CK=${1:-/work/big/flash-2}
WORK=${2:-${TMPDIR:-/tmp}/wpack-bench-export}
PROFILE=${PROFILE:-reference}
RUNS=${RUNS:-1}
THREADS=${THREADS:-$(getconf _NPROCESSORS_ONLN)}

[ -x "$WPACK" ] || { echo "bench/export.sh: $WPACK not built (make first)" >&2; exit 2; }
[ -d "$CK" ] || { echo "bench/export.sh: $CK: no checkpoint (wpack synth --preset flash --layers 2 -o $CK)" >&2; exit 2; }
mkdir -p "$WORK"
B="$WORK/build"
num() { sed -n "s/^[[:space:]]*\"$1\":[[:space:]]*\\([0-9.eE+-]*\\),*$/\\1/p" "$2" | head -1; }
drop() { sync; [ "${DROP_CACHES:-0}" = 1 ] && { echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }; return 0; }

if [ ! -d "$B" ]; then
    echo "converting $CK (--profile $PROFILE) into $B ..." >&2
    "$WPACK" convert "$CK" -o "$B" --profile "$PROFILE" --threads "$THREADS" -q --json > "$WORK/convert.json"
    printf '# convert: %.2f GB out in %.1fs\n' "$(echo "$(num bytes_out "$WORK/convert.json") / 1000000000" | bc -l)" \
        "$(num seconds "$WORK/convert.json")"
    rm -f "$WORK/convert.json"
fi
build_bytes=$(du -sb "$B" | cut -f1)
drop
t0=$(date +%s.%N)
for f in "$B"/*.wpk; do dd if="$f" of=/dev/null bs=16M iflag=direct status=none; done
t1=$(date +%s.%N)
t_read=$(echo "$t1 - $t0" | bc -l)
printf '# build %s (%s): %.2f GB, %s thread(s), %s\n' "$B" "$PROFILE" \
    "$(echo "$build_bytes / 1000000000" | bc -l)" "$THREADS" "$(uname -r)"
printf '# reading the build (O_DIRECT): %.1fs (%.3f GB/s)\n' "$t_read" "$(echo "$build_bytes / $t_read / 1000000000" | bc -l)"
printf '%8s %8s %12s %9s %6s %12s %6s %13s %8s\n' build_GB out_GB export_GB/s dd_GB/s ratio in+out_GB/s ratio \
    peak_RSS_MiB seconds

best_x=0 best_d=0 best_io=0 rss=0 out=0 secs=0
i=0
while [ "$i" -lt "$RUNS" ]; do
    i=$((i + 1))
    rm -rf "$WORK/out" "$WORK/dd.bin"
    drop
    "$WPACK" export "$B" -o "$WORK/out" --threads "$THREADS" -q --json > "$WORK/export.json"
    out=$(num total_size "$WORK/export.json")
    sec=$(num seconds "$WORK/export.json")
    r=$(num peak_rss_bytes "$WORK/export.json")
    [ "$r" -gt "$rss" ] 2>/dev/null && rss=$r
    x=$(echo "$out / $sec / 1000000000" | bc -l)
    rm -rf "$WORK/out"
    drop
    # the I/O limit: the same bytes, written and fsynced by dd
    mib=$(( (out + 1048575) / 1048576 ))
    t0=$(date +%s.%N)
    dd if=/dev/zero of="$WORK/dd.bin" bs=1M count="$mib" conv=fsync status=none
    t1=$(date +%s.%N)
    rm -f "$WORK/dd.bin"
    d=$(echo "$mib * 1048576 / ($t1 - $t0) / 1000000000" | bc -l)
    io=$(echo "$out / ($t_read + $t1 - $t0) / 1000000000" | bc -l)
    if [ "$(echo "$x > $best_x" | bc -l)" = 1 ]; then best_x=$x; secs=$sec; fi
    best_d=$(echo "if ($d > $best_d) $d else $best_d" | bc -l)
    best_io=$(echo "if ($io > $best_io) $io else $best_io" | bc -l)
done
printf '%8.2f %8.2f %12.3f %9.3f %6.2f %12.3f %6.2f %13.0f %8.1f\n' \
    "$(echo "$build_bytes / 1000000000" | bc -l)" "$(echo "$out / 1000000000" | bc -l)" \
    "$best_x" "$best_d" "$(echo "$best_x / $best_d" | bc -l)" "$best_io" "$(echo "$best_x / $best_io" | bc -l)" \
    "$(echo "$rss / 1048576" | bc -l)" "$secs"
rm -f "$WORK/export.json"
[ "${KEEP:-0}" = 1 ] || rm -rf "$B"
