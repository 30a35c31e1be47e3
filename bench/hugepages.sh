#!/bin/sh
# bench/hugepages.sh — time to touch all weights of a >= 2 GB build, with and
# without huge pages, plus dTLB misses where `perf stat` can count them.
#
#   sh bench/hugepages.sh            (SIZE_MB=2200 BUILD=build-bench by default)
#
# Builds a synthetic .wpk with --align 2M (bench/wpk_synth.c, the real writer),
# then runs bench/hugetouch.c in three modes: the plain file mapping,
# transparent huge pages (anonymous copy + MADV_HUGEPAGE) and explicit huge
# pages (libhugetlbfs / MAP_HUGETLB).  Explicit pages need a reservation; as
# root, RESERVE=1 reserves them for the run and restores the old value after.
# Without pages the explicit run reports the library's fallback notice.
set -eu
cd "$(dirname "$0")/.."
SIZE_MB=${SIZE_MB:-2200}
BUILD=${BUILD:-build-bench}
READS_M=${READS_M:-20}
DIR=${TMPDIR:-/tmp}/wpack-bench-huge.$$
trap 'rm -rf "$DIR"; [ -n "${OLD_NR:-}" ] && echo "$OLD_NR" > /proc/sys/vm/nr_hugepages || true' EXIT INT TERM
mkdir -p "$DIR"

make -s -j2 BUILD="$BUILD" "$BUILD/libwpack.a" >/dev/null
LIBS="-lzstd -lcrypto -lcjson -lhugetlbfs -lpthread -lm"
cc -O2 -std=c11 -D_GNU_SOURCE -I. bench/wpk_synth.c "$BUILD/libwpack.a" $LIBS -o "$DIR/wpk_synth"
cc -O2 -std=c11 -D_GNU_SOURCE -I. bench/hugetouch.c "$BUILD/libwpack.a" $LIBS -o "$DIR/hugetouch"

echo "== synthetic build: ${SIZE_MB} MiB, --align 2M"
t0=$(date +%s.%N)
"$DIR/wpk_synth" "$DIR/big.wpk" "$SIZE_MB" 2097152
echo "written in $(echo "$(date +%s.%N) - $t0" | bc) s"

if [ "${RESERVE:-0}" = 1 ] && [ -w /proc/sys/vm/nr_hugepages ]; then
    OLD_NR=$(cat /proc/sys/vm/nr_hugepages)
    need=$(( (SIZE_MB + 200) / 2 ))
    echo "$need" > /proc/sys/vm/nr_hugepages
    echo "reserved $(grep HugePages_Free /proc/meminfo | awk '{print $2}') x 2 MiB huge pages (was $OLD_NR)"
fi

# perf stat with dTLB events, when the PMU exposes them (not in most VMs).
PERF=""
if command -v perf >/dev/null 2>&1 &&
   perf stat -x, -e dTLB-load-misses true 2>&1 | grep -q '^[0-9]'; then
    PERF="perf stat -e dTLB-load-misses,dTLB-loads -x, -o $DIR/perf.txt"
else
    echo "(perf cannot count dTLB events on this machine: timing only)"
fi

echo "== $(uname -r), $(nproc) cores, THP: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)"
for mode in none thp explicit; do
    if [ -n "$PERF" ]; then
        $PERF "$DIR/hugetouch" "$DIR/big.wpk" "$mode" "$READS_M"
        awk -F, '/dTLB/ {printf "    %s: %s\n", $3, $1}' "$DIR/perf.txt"
    else
        "$DIR/hugetouch" "$DIR/big.wpk" "$mode" "$READS_M"
    fi
done
