#!/bin/sh
# bench/rt_kernels.sh — decode product throughput (bench/rt_kernels.c) of one or two
# libwpack.a builds, alternated in one run, best (least CPU seconds) of ROUNDS each:
#
#   sh bench/rt_kernels.sh [LIB_A [LIB_B]]    (default build/libwpack.a; env ROUNDS=5)
#
# CPU seconds, not wall time, so the load of a shared machine does not enter the figure
# (it still moves it somewhat: caches and memory are shared).
set -eu
cd "$(dirname "$0")/.."
A=${1:-build/libwpack.a}
B=${2:-}
ROUNDS=${ROUNDS:-5}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
LIBS="-lzstd -lcrypto -lcjson -lhugetlbfs -lpthread -lm"
cc -O2 -std=c11 -D_GNU_SOURCE -pthread -I. bench/rt_kernels.c "$A" $LIBS -o "$TMP/a"
[ -z "$B" ] || cc -O2 -std=c11 -D_GNU_SOURCE -pthread -I. bench/rt_kernels.c "$B" $LIBS -o "$TMP/b"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for mode in "cache 0 30000" "cache 1 30000" "cache 2 30000" "mem 0 40" "mem 1 40" "mem 2 40"; do
    for v in a b; do
        [ -x "$TMP/$v" ] || continue
        : > "$TMP/$v.out"
        i=0
        while [ $i -lt "$ROUNDS" ]; do
            "$TMP/$v" $mode >> "$TMP/$v.out"
            i=$((i + 1))
        done
    done
    for v in a b; do
        [ -s "$TMP/$v.out" ] || continue
        lib=$A; [ $v = a ] || lib=$B
        printf '%-18s %s: ' "$lib" "$mode"
        sort -t: -k2 -n "$TMP/$v.out" | head -1
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
