#!/bin/sh
# bench/convert.sh — convert throughput and peak RSS next to the disk's own
# write rate on the same bytes (issue 3).
#
#   sh bench/convert.sh [WORKDIR]
#
# Makes (once) a synthetic V4-Flash-shaped checkpoint with `wpack synth
# --preset flash --layers $LAYERS` (>= 10 GB at the default 2 layers + MTP),
# then for each profile: `wpack convert --json` (GB/s of output, peak RSS
# from the tool's own VmHWM), and `dd conv=fsync` writing the same number of
# bytes (the I/O limit), best of $RUNS each.  A convert must also read its
# input, which dd does not: the checkpoint is read once with O_DIRECT (`dd
# iflag=direct`: the disk, not the page cache) and "in+out" is the output
# bytes over (read time + dd time), the I/O limit of a convert that overlaps
# nothing.  DROP_CACHES=1 also drops the page cache before each timed step
# (system-wide: only on a machine of your own).  One line per profile:
#
#   profile  out_GB  convert_GB/s  dd_GB/s  ratio  in+out_GB/s  ratio  peak_RSS_MiB
#
# Then the CPU side alone (bench/convert_cpu.c: same plan and pipeline, every
# output tensor SHA-256'd but not written) on a smaller checkpoint that fits
# the page cache (flash, 1 layer, 64 experts, read again before every run:
# the pipeline drops what it reads): the re-encode throughput of the cores,
# 1 thread and $THREADS.  bench/convert_cpu.sh has the fuller table.
#
# read_back_MB is what convert hashed by reading its own output back (the
# file digests are computed while writing, docs/signing.md §2.2.1: only
# shard 0's data part and chunks that arrived ahead of a shard's cursor).
#
# Then per-rank conversion (docs/distributed.md), for the first profile:
# `convert --ep $RANKS --rank R` for each rank in turn, one line per rank with
# the source tensor bytes it read next to the checkpoint's, then `wpack merge`
# of the parts; CHECK_SINGLE=1 first converts the single-machine `--ep
# $RANKS` build and keeps only its manifest.json (every file's shard digests
# and every tensor's: equal manifests and a `verify --deep` of the merged
# build mean equal bytes, without the disk for two builds).  RANKS=0 skips.
#
# Environment: WPACK (default build/wpack), CKPT (an existing checkpoint to
# use instead of making one; never removed), LAYERS (2), RUNS (1), THREADS
# (online CPUs), BUDGET (1G), PROFILES ("reference hopper bf16"), RANKS (4; a
# list such as "2 4" runs each),
# CHECK_SINGLE (0), SKIP_CPU=1 to skip the CPU side, KEEP=1 to keep the
# checkpoint.  Needs free disk for the checkpoint + the largest
# output (bf16 is ~3x the checkpoint).  Numbers on a shared machine are
# noisy: run with nothing else going on.
set -eu

WPACK=${WPACK:-build/wpack}
WORK=${1:-${TMPDIR:-/tmp}/wpack-bench-convert}
LAYERS=${LAYERS:-2}
RUNS=${RUNS:-1}
BUDGET=${BUDGET:-1G}
PROFILES=${PROFILES:-"reference hopper bf16"}
THREADS=${THREADS:-$(getconf _NPROCESSORS_ONLN)}

[ -x "$WPACK" ] || { echo "bench/convert.sh: $WPACK not built (make first)" >&2; exit 2; }
mkdir -p "$WORK"
RANKS_LIST=${RANKS:-4}
[ "$RANKS_LIST" = 0 ] && RANKS_LIST=""
CK=${CKPT:-$WORK/flash-$LAYERS}
[ -n "${CKPT:-}" ] && KEEP=1
if [ ! -d "$CK" ]; then
    echo "making $CK (wpack synth --preset flash --layers $LAYERS) ..." >&2
    "$WPACK" synth --preset flash --layers "$LAYERS" -o "$CK" >&2
fi
in_bytes=$(du -sb "$CK" | cut -f1)
printf '# checkpoint %s: %.2f GB, %s thread(s), budget %s, %s\n' "$CK" \
    "$(echo "$in_bytes / 1000000000" | bc -l)" "$THREADS" "$BUDGET" "$(uname -r)"
drop() { sync; [ "${DROP_CACHES:-0}" = 1 ] && { echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }; return 0; }
t0=$(date +%s.%N)
for f in "$CK"/*.safetensors; do dd if="$f" of=/dev/null bs=16M iflag=direct status=none; done
t1=$(date +%s.%N)
t_read=$(echo "$t1 - $t0" | bc -l)
printf '# reading the checkpoint (O_DIRECT): %.1fs (%.3f GB/s)\n' "$t_read" "$(echo "$in_bytes / $t_read / 1000000000" | bc -l)"
printf '%-10s %8s %13s %9s %6s %12s %6s %13s %13s\n' profile out_GB convert_GB/s dd_GB/s ratio in+out_GB/s ratio peak_RSS_MiB read_back_MB

num() { sed -n "s/^[[:space:]]*\"$1\":[[:space:]]*\\([0-9.eE+-]*\\),*$/\\1/p" "$2" | head -1; }

for p in $PROFILES; do
    best_c=0 best_d=0 best_io=0 rss=0 out=0 rb=0
    i=0
    while [ "$i" -lt "$RUNS" ]; do
        i=$((i + 1))
        rm -rf "$WORK/out" "$WORK/dd.bin"
        drop
        "$WPACK" convert "$CK" -o "$WORK/out" --profile "$p" --threads "$THREADS" \
            --mem-budget "$BUDGET" --json > "$WORK/summary.json"
        out=$(num bytes_out "$WORK/summary.json")
        sec=$(num seconds "$WORK/summary.json")
        r=$(num peak_rss_bytes "$WORK/summary.json")
        rb=$(num bytes_read_back "$WORK/summary.json")
        [ "$r" -gt "$rss" ] 2>/dev/null && rss=$r
        c=$(echo "$out / $sec / 1000000000" | bc -l)
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
        best_c=$(echo "if ($c > $best_c) $c else $best_c" | bc -l)
        best_d=$(echo "if ($d > $best_d) $d else $best_d" | bc -l)
        best_io=$(echo "if ($io > $best_io) $io else $best_io" | bc -l)
    done
    printf '%-10s %8.2f %13.3f %9.3f %6.2f %12.3f %6.2f %13.0f %13.1f\n' "$p" "$(echo "$out / 1000000000" | bc -l)" \
        "$best_c" "$best_d" "$(echo "$best_c / $best_d" | bc -l)" "$best_io" "$(echo "$best_c / $best_io" | bc -l)" \
        "$(echo "$rss / 1048576" | bc -l)" "$(echo "${rb:-0} / 1000000" | bc -l)"
done

# ---- per-rank conversion: bytes each rank reads; merge ----------------------------
set -- $PROFILES
p=$1
for RANKS in $RANKS_LIST; do
    rm -rf "$WORK/parts" "$WORK/merged" "$WORK/single"
    mkdir -p "$WORK/parts"
    if [ "${CHECK_SINGLE:-0}" = 1 ]; then
        "$WPACK" convert "$CK" -o "$WORK/single" --profile "$p" --ep "$RANKS" --threads "$THREADS" \
            --mem-budget "$BUDGET" -q > /dev/null
        cp "$WORK/single/manifest.json" "$WORK/single.manifest.json"
        rm -rf "$WORK/single"
    fi
    printf '# per-rank convert, profile %s, --ep %s: source tensor bytes read by each rank\n' "$p" "$RANKS"
    printf '%-6s %12s %12s %7s %10s %13s\n' rank read_GB ckpt_GB share seconds read_back_MB
    r=0
    while [ "$r" -lt "$RANKS" ]; do
        drop
        "$WPACK" convert "$CK" -o "$WORK/parts/rank-$r" --profile "$p" --ep "$RANKS" --rank "$r" --threads "$THREADS" \
            --mem-budget "$BUDGET" --json > "$WORK/rank.json"
        rd=$(num bytes_read "$WORK/rank.json")
        tot=$(num checkpoint_tensor_bytes "$WORK/rank.json")
        printf '%-6s %12.3f %12.3f %7.3f %10.1f %13.1f\n' "$r" "$(echo "$rd / 1000000000" | bc -l)" \
            "$(echo "$tot / 1000000000" | bc -l)" "$(echo "$rd / $tot" | bc -l)" "$(num seconds "$WORK/rank.json")" \
            "$(echo "$(num bytes_read_back "$WORK/rank.json") / 1000000" | bc -l)"
        r=$((r + 1))
    done
    "$WPACK" merge "$WORK"/parts/rank-* -o "$WORK/merged" --threads "$THREADS" --json > "$WORK/merge.json"
    printf '# merge: %s ranks, %.2f GB, %s linked, %.1fs (every part verified, --deep)\n' \
        "$(num ranks "$WORK/merge.json")" "$(echo "$(num bytes "$WORK/merge.json") / 1000000000" | bc -l)" \
        "$(num linked "$WORK/merge.json")" "$(num seconds "$WORK/merge.json")"
    if [ "${CHECK_SINGLE:-0}" = 1 ]; then
        same=NO
        cmp -s "$WORK/single.manifest.json" "$WORK/merged/manifest.json" &&
            "$WPACK" verify "$WORK/merged" --allow-unsigned --deep --threads "$THREADS" -q > /dev/null && same=yes
        printf '# merged == single-machine --ep %s build (same manifest.json; merged verifies --deep): %s\n' \
            "$RANKS" "$same"
    fi
    rm -rf "$WORK/parts" "$WORK/merged" "$WORK/single" "$WORK/single.manifest.json" "$WORK/rank.json" "$WORK/merge.json"
done
rm -f "$WORK/summary.json"
[ "${KEEP:-0}" = 1 ] || rm -rf "$CK"

# ---- CPU side: input cached, output hashed and dropped --------------------------
[ "${SKIP_CPU:-0}" = 1 ] && exit 0
LIB="$(dirname "$WPACK")/libwpack.a"
cc -O2 -std=c11 -D_GNU_SOURCE -pthread -I. bench/convert_cpu.c "$LIB" \
    -lzstd -lcrypto -lcjson -lhugetlbfs -lpthread -lm -o "$WORK/convert_cpu"
SMALL="$WORK/flash-1x64"
[ -d "$SMALL" ] || "$WPACK" synth --preset flash --layers 1 --experts 64 -o "$SMALL" >&2
cat "$SMALL"/*.safetensors > /dev/null
printf '# CPU side on %s (%.2f GB, cached): output GB/s, writes dropped\n' "$SMALL" \
    "$(echo "$(du -sb "$SMALL" | cut -f1) / 1000000000" | bc -l)"
printf '%-16s %8s %12s %12s %13s\n' profile out_GB "1 thread" "$THREADS threads" peak_RSS_MiB
for p in $PROFILES blackwell-nvfp4; do
    # re-read before every run: the pipeline drops the input pages it has
    # read (fadvise DONTNEED), so a run after another would read from disk
    # (issue 14: that made "$THREADS threads" look slower than "1 thread")
    cat "$SMALL"/*.safetensors > /dev/null
    set -- $("$WORK/convert_cpu" "$SMALL" "$p" 1)
    one=$3
    cat "$SMALL"/*.safetensors > /dev/null
    set -- $("$WORK/convert_cpu" "$SMALL" "$p" "$THREADS")
    printf '%-16s %8.2f %12.3f %12.3f %13.0f\n' "$p" "$1" "$one" "$3" "$4"
done
[ "${KEEP:-0}" = 1 ] || rm -rf "$SMALL"
rm -f "$WORK/convert_cpu"
