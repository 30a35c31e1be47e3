#!/bin/sh
# run.sh OUT SECONDS [NAMES] — `make fuzz-run`: run each libFuzzer binary
# OUT/fuzz/fuzz_NAME in turn (never two at once) for SECONDS, starting from
# its seeds (tests/fuzz/corpus/NAME, read-only) and the regression inputs,
# growing a working corpus in OUT/fuzz-corpus/NAME, writing findings to
# OUT/fuzz-findings/NAME/.  NAMES (comma-separated) picks harnesses.  Prints
# one table: harness, seconds, executions, executions/s, findings.  Exits 1
# if any harness found something.  docs/fuzzing.md.
set -u
OUT=$1
SECS=${2:-60}
PICK=${3:-}
cd "$(dirname "$0")/../.."
total=0
rows=""
for bin in "$OUT"/fuzz/fuzz_*; do
    [ -x "$bin" ] || continue
    name=${bin##*/fuzz_}
    if [ -n "$PICK" ]; then
        case ",$PICK," in *",$name,"*) ;; *) continue ;; esac
    fi
    corpus="$OUT/fuzz-corpus/$name"
    finds="$OUT/fuzz-findings/$name"
    log="$OUT/fuzz-logs/$name.log"
    mkdir -p "$corpus" "$finds" "$OUT/fuzz-logs"
    # -timeout: an input that runs 10 s is a hang (a finding); -rss_limit_mb:
    # one that needs 2 GB is unbounded; leaks are findings (ASan).
    start=$(date +%s)
    "$bin" "$corpus" "tests/fuzz/corpus/$name" tests/regress \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$finds/" >"$log" 2>&1
    rc=$?
    end=$(date +%s)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$execs" ] || execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
    n=$(find "$finds" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
    [ "$rc" -ne 0 ] && [ "$n" -eq 0 ] && n="rc$rc"
    secs=$((end - start))
    rate=$([ "$secs" -gt 0 ] && echo $(( ${execs:-0} / secs )) || echo "-")
    rows="$rows$(printf '%-12s %8s %12s %10s  %s' "$name" "$secs" "${execs:-0}" "$rate" "$n")
"
    [ "$n" != 0 ] && total=$((total + 1))
done
printf '%-12s %8s %12s %10s  %s\n' harness seconds executions exec/s findings
printf '%s' "$rows"
echo "logs: $OUT/fuzz-logs/  findings: $OUT/fuzz-findings/  corpus: $OUT/fuzz-corpus/"
[ "$total" -eq 0 ]
