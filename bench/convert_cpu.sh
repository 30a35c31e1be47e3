#!/bin/sh
# bench/convert_cpu.sh — the CPU side of `wpack convert` per profile at 1 and
# 2 threads (issue 14), each figure next to its peer: the 2-thread/1-thread
# ratio (ideal 2.00), and for each profile the quant kernel set used.
#
#   sh bench/convert_cpu.sh [CKPT]
#
# First the quantisers alone (bench/quant_kernels.c): output GB/s of each
# kernel set this CPU runs, next to the scalar oracle (x_scalar), its bytes
# checked against the oracle's.  Then bench/convert_cpu.c (same plan and pipeline as `wpack convert`, every
# output tensor SHA-256'd as the .wpk writer does, nothing written) on CKPT,
# by default a V4-Flash-shaped checkpoint that fits the page cache (made
# once: `wpack synth --preset flash --layers 1 --experts 64`, 4.1 GB).
# The input must be cached for this to measure the cores: the pipeline drops
# the pages it has read (posix_fadvise DONTNEED, so a real convert leaves
# the cache to its output), so the checkpoint is read again before EVERY run
# and `fincore` (where present) prints how much of it was cached.  A run
# that follows another without that re-read reads half its input from disk:
# that is what made bench/convert.sh's "2 threads" column slower than its
# "1 thread" column (it warmed the cache once, before the 1-thread run).
# 1- and 2-thread runs alternate, RUNS times; the best of each is kept.
#
# Environment: KSECS (seconds per kernel figure, 0.5), WPACK (build/wpack; its libwpack.a is linked), PROFILES
# (reference hopper blackwell blackwell-nvfp4 bf16), RUNS (2), ISAS (the
# quant kernel sets to run, e.g. "avx512 scalar"; default: the best one,
# named "best"), KEEP=0 to delete a checkpoint this script made.
# One line per profile and kernel set:
#
#   profile isa out_GB 1t_GB/s 2t_GB/s 2t/1t 1t_GB/cpu-s 2t_GB/cpu-s cpu_2t/1t read/in cached_% load
#
# read/in is the source bytes the pipeline read over the checkpoint's tensor
# bytes (1.00: each byte once; issue 13); peer_2/1 is the machine's own
# 2-process/1-process ratio for a CPU-bound peer (`openssl speed sha256`,
# 2 s each, measured right after the profile's runs; "?" without openssl):
# the 2t/1t a perfect code could show in that minute on a shared machine;
# GB/s is output over wall time, best of RUNS; GB/cpu-s is output over the
# CPU time the run used (user + system, all threads; best of RUNS): what the
# work costs whatever else the machine runs.  2t/1t is the thread scaling
# (ideal 2.00 on an idle 2-core machine); cpu_2t/1t is the work lost to the
# second thread (ideal 1.00: locks, shared caches and memory bandwidth).  On
# a loaded machine the wall figures say more about the scheduler than about
# wpack: read the load column, repeat, and trust the CPU figures first.
set -eu

WPACK=${WPACK:-build/wpack}
PROFILES=${PROFILES:-"reference hopper blackwell blackwell-nvfp4 bf16"}
RUNS=${RUNS:-2}
ISAS=${ISAS:-best}
LIB="$(dirname "$WPACK")/libwpack.a"
[ -x "$WPACK" ] && [ -f "$LIB" ] || { echo "bench/convert_cpu.sh: $WPACK / $LIB not built (make first)" >&2; exit 2; }
TMP=$(mktemp -d "${TMPDIR:-/tmp}/convert_cpu.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
# quant_kernels needs a library with the kernel sets (issue 14); without
# them (an older build, for a "before" figure) its section is left out.
for b in convert_cpu quant_kernels; do
    cc -O2 -std=c11 -D_GNU_SOURCE -pthread -I. "bench/$b.c" "$LIB" \
        -lzstd -lcrypto -lcjson -lhugetlbfs -lpthread -lm -o "$TMP/$b" 2> "$TMP/cc.log" ||
        [ "$b" = quant_kernels ] || { cat "$TMP/cc.log" >&2; exit 2; }
done

CK=${1:-${TMPDIR:-/tmp}/wpack-bench-convert/flash-1x64}
made=0
if [ ! -d "$CK" ]; then
    mkdir -p "$(dirname "$CK")"
    "$WPACK" synth --preset flash --layers 1 --experts 64 -o "$CK" >&2
    made=1
fi
in_bytes=$(du -sb "$CK" | cut -f1)
warm() { cat "$CK"/*.safetensors > /dev/null; }
cached() {
    if command -v fincore > /dev/null 2>&1; then
        fincore -b -n "$CK"/*.safetensors | awk -v t="$in_bytes" '{ s += $1 } END { printf "%.0f", 100 * s / t }'
    else
        echo "?"
    fi
}
printf '# %s: %.2f GB; %s online CPUs; %s; load %s\n' "$CK" "$(echo "$in_bytes / 1000000000" | bc -l)" \
    "$(getconf _NPROCESSORS_ONLN)" "$(uname -r)" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '# the quantisers alone, one thread, in cache (bench/quant_kernels.c; load %s)\n' "$(cut -d' ' -f1 /proc/loadavg)"
if [ -x "$TMP/quant_kernels" ]; then
    "$TMP/quant_kernels" "${KSECS:-0.5}" || { echo "bench/convert_cpu.sh: a kernel set differs from scalar" >&2; exit 1; }
else
    echo "# (this library has no quant kernel sets: section left out)"
fi
peer() {   # openssl sha256 kB/s over 16 KiB blocks, $1 processes
    if command -v openssl > /dev/null 2>&1; then
        if [ "$1" = 1 ]; then openssl speed -seconds 2 -bytes 16384 sha256 2> /dev/null
        else openssl speed -seconds 2 -bytes 16384 -multi "$1" sha256 2> /dev/null; fi |
            awk '/^sha256/ { v = $NF } END { sub("k", "", v); print v + 0 }'
    else
        echo 0
    fi
}
printf '%-16s %-7s %7s %9s %9s %6s %12s %12s %9s %7s %8s %8s %5s\n' profile isa out_GB 1t_GB/s 2t_GB/s 2t/1t \
    1t_GB/cpu-s 2t_GB/cpu-s cpu_2t/1t read/in peer_2/1 cached_% load
for p in $PROFILES; do
    for isa in $ISAS; do
        b1=0 b2=0 c1=0 c2=0 out=0 c=100
        i=0
        while [ "$i" -lt "$RUNS" ]; do
            i=$((i + 1))
            for t in 1 2; do
                warm
                cc=$(cached)
                [ "$cc" != "?" ] && [ "$cc" -lt "$c" ] && c=$cc
                if [ "$isa" = best ]; then
                    set -- $("$TMP/convert_cpu" "$CK" "$p" "$t")
                else
                    set -- $(WPACK_QUANT_ISA=$isa "$TMP/convert_cpu" "$CK" "$p" "$t")
                fi
                out=$1
                rd=${6:-?}
                g=$(echo "$1 / $5" | bc -l)
                if [ "$t" = 1 ]; then
                    b1=$(echo "if ($3 > $b1) $3 else $b1" | bc -l)
                    c1=$(echo "if ($g > $c1) $g else $c1" | bc -l)
                else
                    b2=$(echo "if ($3 > $b2) $3 else $b2" | bc -l)
                    c2=$(echo "if ($g > $c2) $g else $c2" | bc -l)
                fi
            done
        done
        o1=$(peer 1) o2=$(peer 2)
        pr=$(awk -v a="$o1" -v b="$o2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", b / a; else print "?" }')
        printf '%-16s %-7s %7.2f %9.3f %9.3f %6.2f %12.3f %12.3f %9.2f %7s %8s %8s %5s\n' "$p" "$isa" "$out" "$b1" "$b2" \
            "$(echo "$b2 / $b1" | bc -l)" "$c1" "$c2" "$(echo "$c2 / $c1" | bc -l)" "$rd" "$pr" "$c" \
            "$(cut -d' ' -f1 /proc/loadavg)"
    done
done
[ "$made" = 1 ] && [ "${KEEP:-1}" = 0 ] && rm -rf "$CK"
exit 0
