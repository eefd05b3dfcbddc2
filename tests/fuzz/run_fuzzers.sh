#!/usr/bin/env bash
# Runs each libFuzzer target of a SHOAL_FUZZ build for a bounded time (used
# by `make fuzz`).
#
#   tests/fuzz/run_fuzzers.sh BUILD_DIR SECONDS TARGET...
#
# Each target starts from its seed corpus and past findings
# (tests/fuzz/corpus/<t>, tests/fuzz/regressions/<t>), read-only: the inputs
# it finds interesting go to BUILD_DIR/fuzz-run/<t>/corpus, never into the
# source tree. A crash, leak, sanitizer report, hang (-timeout, or the
# target's own bound) or out-of-memory (-rss_limit_mb) ends that target and
# leaves the input in BUILD_DIR/fuzz-run/<t>/; every target still runs, and
# the script fails at the end if any found something. Extra libFuzzer flags:
# FUZZ_FLAGS in the environment.
set -uo pipefail
build=$1 seconds=$2
shift 2
src=$(cd "$(dirname "$0")" && pwd)
summary=() failed=()
for t in "$@"; do
  bin=$build/tests/fuzz/fuzz_$t
  work=$build/fuzz-run/$t
  rm -rf "$work" && mkdir -p "$work/corpus"
  echo "== fuzz_$t: ${seconds}s (log: $work/log)"
  # -timeout: one input may take at most 25 s (the network targets bound
  # themselves at a few seconds and abort with their own message first).
  # -rss_limit_mb: the whole process, server included.
  "$bin" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/" ${FUZZ_FLAGS:-} \
    "$work/corpus" "$src/corpus/$t" "$src/regressions/$t" >"$work/log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1)
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    tail -n 60 "$work/log"
    echo "== fuzz_$t FOUND SOMETHING (exit $rc); input: $(find "$work" -maxdepth 1 -type f \
      \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | tr '\n' ' ')"
    echo "   reproduce: $bin <input>; keep it: copy it to tests/fuzz/regressions/$t/"
  fi
  summary+=("$(printf '%-14s %10s execs  %7s execs/s  %-10s %s' "$t" "${runs:-?}" "${speed:-?}" "${cov:-}" \
    "$([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)")")")
done
echo "== fuzz summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
[ ${#failed[@]} -eq 0 ] || { echo "fuzz: findings in: ${failed[*]}" >&2; exit 1; }
