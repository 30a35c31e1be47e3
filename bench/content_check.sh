#!/bin/sh
# bench/content_check.sh — what the content checks cost (issue 9): `wpack
# convert` with and without them on a V4-Flash-shaped checkpoint, the rate of
# `wpack inspect --deep` over it, and the screens alone in memory.
#
#   sh bench/content_check.sh [WORKDIR]
#
# Makes (once) `wpack synth --preset flash --layers $LAYERS` (about 7 GB at the
# default 1 layer + MTP + embed/head; checks the free space first), then for
# each profile in $PROFILES converts it $RUNS times with the checks on and
# $RUNS times with WPACK_BENCH_NO_CONTENT_CHECK=1 (the bench-only switch of
# the pipeline; alternating, best of each), and prints wall seconds and CPU
# seconds (user + sys, /usr/bin/time: less at the mercy of the disk and the
# neighbours than the wall clock) with the checks on and off, and the cost:
#
#   profile  out_GB  on_s  off_s  cost_%  on_cpu_s  off_cpu_s  cpu_%  on_GB/s  off_GB/s
#
# then `wpack inspect --deep` over the checkpoint (seconds, GB/s, threads),
# and bench/check_screen.c: each dtype's screen in memory on one core.
#
# Environment: WPACK (default build/wpack), LAYERS (1), RUNS (2), THREADS
# (online CPUs), PROFILES ("reference hopper"), KEEP=1 keeps the checkpoint,
# CKPT=DIR measures an existing checkpoint instead (never removed).
# Needs free disk for the checkpoint and one build of it (~2 x 7 GB).  The
# checkpoint's pages are dropped as convert reads them (POSIX_FADV_DONTNEED),
# so every run reads from disk; numbers on a shared machine are noisy.
set -eu

WPACK=${WPACK:-build/wpack}
WORK=${1:-${TMPDIR:-/tmp}/wpack-bench-check}
LAYERS=${LAYERS:-1}
RUNS=${RUNS:-2}
PROFILES=${PROFILES:-"reference hopper"}
THREADS=${THREADS:-$(getconf _NPROCESSORS_ONLN)}

[ -x "$WPACK" ] || { echo "bench/content_check.sh: $WPACK not built (make first)" >&2; exit 2; }
mkdir -p "$WORK"
CK=${CKPT:-"$WORK/flash-$LAYERS"}
[ -n "${CKPT:-}" ] && KEEP=1   # someone else's checkpoint: never removed
if [ ! -d "$CK" ]; then
    need_kb=$((16 * 1024 * 1024 * LAYERS))   # checkpoint + one build, with room to spare
    free_kb=$(df -Pk "$WORK" | awk 'NR == 2 { print $4 }')
    if [ "$free_kb" -lt "$need_kb" ]; then
        echo "bench/content_check.sh: $WORK has $((free_kb / 1048576)) GiB free, needs ~$((need_kb / 1048576)) GiB" >&2
        exit 2
    fi
    echo "making $CK (wpack synth --preset flash --layers $LAYERS) ..." >&2
    "$WPACK" synth --preset flash --layers "$LAYERS" -o "$CK" >&2
fi
in_bytes=$(du -sb "$CK" | cut -f1)
printf '# checkpoint %s: %.2f GB, %s thread(s), %s\n' "$CK" \
    "$(echo "$in_bytes / 1000000000" | bc -l)" "$THREADS" "$(uname -r)"

num() { sed -n "s/^[[:space:]]*\"$1\":[[:space:]]*\\([0-9.eE+-]*\\),*$/\\1/p" "$2" | head -1; }

# one convert: prints "wall_seconds cpu_seconds" (cpu = user + sys of the
# process, /usr/bin/time); $1 profile, $2 "on"/"off"
convert_once() {
    rm -rf "$WORK/out"
    if [ "$2" = off ]; then
        WPACK_BENCH_NO_CONTENT_CHECK=1 /usr/bin/time -f '%U %S' -o "$WORK/cpu" "$WPACK" convert "$CK" \
            -o "$WORK/out" --profile "$1" --threads "$THREADS" --json > "$WORK/summary.json"
    else
        /usr/bin/time -f '%U %S' -o "$WORK/cpu" "$WPACK" convert "$CK" -o "$WORK/out" --profile "$1" \
            --threads "$THREADS" --json > "$WORK/summary.json"
    fi
    echo "$(num seconds "$WORK/summary.json") $(awk '{ print $1 + $2 }' "$WORK/cpu")"
}

min() { echo "if ($1 < $2) $1 else $2" | bc -l; }

printf '%-10s %7s %8s %8s %7s %9s %9s %7s %8s %8s\n' profile out_GB on_s off_s cost_% on_cpu_s off_cpu_s cpu_% \
    on_GB/s off_GB/s
for p in $PROFILES; do
    on=1000000000 off=1000000000 on_cpu=1000000000 off_cpu=1000000000
    i=0
    while [ "$i" -lt "$RUNS" ]; do
        i=$((i + 1))
        set -- $(convert_once "$p" on)
        on=$(min "$1" "$on") on_cpu=$(min "$2" "$on_cpu")
        set -- $(convert_once "$p" off)
        off=$(min "$1" "$off") off_cpu=$(min "$2" "$off_cpu")
    done
    out=$(num bytes_out "$WORK/summary.json")
    printf '%-10s %7.2f %8.2f %8.2f %7.1f %9.2f %9.2f %7.1f %8.3f %8.3f\n' "$p" "$(echo "$out / 1000000000" | bc -l)" \
        "$on" "$off" "$(echo "($on - $off) * 100 / $off" | bc -l)" "$on_cpu" "$off_cpu" \
        "$(echo "($on_cpu - $off_cpu) * 100 / $off_cpu" | bc -l)" \
        "$(echo "$out / $on / 1000000000" | bc -l)" "$(echo "$out / $off / 1000000000" | bc -l)"
    rm -rf "$WORK/out"
done
rm -f "$WORK/cpu"

# inspect --deep: every byte read and screened, nothing written
"$WPACK" inspect "$CK" --deep --threads "$THREADS" --json > "$WORK/deep.json"
sec=$(sed -n '/"content"/,/}/p' "$WORK/deep.json" | sed -n 's/^[[:space:]]*"seconds":[[:space:]]*\([0-9.eE+-]*\),*$/\1/p')
gbs=$(sed -n '/"content"/,/}/p' "$WORK/deep.json" | sed -n 's/^[[:space:]]*"gb_per_s":[[:space:]]*\([0-9.eE+-]*\),*$/\1/p')
printf '# inspect --deep: %.2f GB in %.2f s = %.3f GB/s (%s threads, from disk)\n' \
    "$(echo "$in_bytes / 1000000000" | bc -l)" "$sec" "$gbs" "$THREADS"
cat "$CK"/*.safetensors > /dev/null 2>&1 || true
"$WPACK" inspect "$CK" --deep --threads "$THREADS" --json > "$WORK/deep.json"
gbs=$(sed -n '/"content"/,/}/p' "$WORK/deep.json" | sed -n 's/^[[:space:]]*"gb_per_s":[[:space:]]*\([0-9.eE+-]*\),*$/\1/p')
printf '# inspect --deep again right after reading the shards once: %.3f GB/s (whatever the page cache kept)\n' "$gbs"
rm -f "$WORK/summary.json" "$WORK/deep.json"
[ "${KEEP:-0}" = 1 ] || rm -rf "$CK"

# ---- the screens alone, in memory, one core ------------------------------------
LIB="$(dirname "$WPACK")/libwpack.a"
cc -O2 -std=c11 -D_GNU_SOURCE -pthread -I. bench/check_screen.c "$LIB" \
    -lzstd -lcrypto -lcjson -lhugetlbfs -lpthread -lm -o "$WORK/check_screen"
echo "# screens in memory, 1 thread, 256 MiB of clean data each:"
"$WORK/check_screen" 256
rm -f "$WORK/check_screen"
