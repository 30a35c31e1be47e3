# bench/timing.sh — the timing and page-cache helpers bench/speed.sh and
# bench/verify.sh share; sourced, not run: `. "$(dirname "$0")/timing.sh"`.
BENCH_NAME="bench/${0##*/}"

# run CMD...: prints "wall cpu" (seconds; cpu = user + sys of the command and its children)
run() {
    python3 - "$BENCH_NAME" "$@" <<'PY'
import os, resource, subprocess, sys, time
r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.monotonic()
rc = subprocess.call(sys.argv[2:], stdout=subprocess.DEVNULL)
t1 = time.monotonic()
r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
if rc: sys.exit("%s: %s failed (exit %d)" % (sys.argv[1], sys.argv[2], rc))
print("%.6f %.6f" % (t1 - t0, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)))
PY
}
# gbs BYTES SECONDS: GB/s (1e9 bytes)
gbs() { awk -v b="$1" -v t="$2" 'BEGIN { printf "%.3f", b / t / 1e9 }'; }

# evict: drop $FILES's pages from the page cache (POSIX_FADV_DONTNEED per file: no root,
# nobody else's cache touched), or the whole cache with DROP_CACHES=1 (root)
evict() {
    sync
    if [ "${DROP_CACHES:-0}" = 1 ]; then echo 3 > /proc/sys/vm/drop_caches
    else for f in $FILES; do dd if="$f" iflag=nocache count=0 status=none; done; fi
}
# cache_state: how much of $FILES ($BYTES bytes) the page cache holds (below 100 % "cached"
# includes disk reads), and how much of the machine's file cache is in 2 MiB folios (cheap
# to map: docs/performance.md "Issue 14, fifth round")
cache_state() {
    pct="?"
    command -v fincore > /dev/null &&
        pct=$(fincore -b -n -o RES $FILES | awk -v t="$BYTES" '{ s += $1 } END { printf "%.0f%%", 100 * s / t }')
    echo "build pages in the page cache $pct; file cache in 2 MiB folios" \
         "$(awk '/^FileHugePages:/ { printf "%.2f GB", $2 * 1024 / 1e9 }' /proc/meminfo) (all files)"
}
