# bench/timing.sh — the timing helpers bench/speed.sh and bench/verify.sh
# share; sourced, not run: `. "$(dirname "$0")/timing.sh"`.
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
