#!/usr/bin/env bash
# Runs ctest in a sanitizer build and fails if any sanitizer reported
# anything, in any process: the test binaries and every shoald they start.
# A shoald whose exit status no test checks, or that a test kills, would
# otherwise hide its report in output nobody reads, so every report goes to
# a file under BUILD_DIR/sanitizer-reports and this script looks there.
#
#   tests/sanitized-ctest.sh BUILD_DIR [ctest arguments...]
set -uo pipefail
build_dir=$(cd "$1" && pwd)
shift
reports="$build_dir/sanitizer-reports"
rm -rf "$reports"
mkdir -p "$reports"

# halt/abort on the first error: the process dies and its test fails too.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$reports/asan"
export LSAN_OPTIONS="log_path=$reports/lsan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$reports/ubsan"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:log_path=$reports/tsan"

cd "$build_dir"
ctest --output-on-failure "$@"
status=$?

found=$(find "$reports" -type f -size +0 | sort)
if [ -n "$found" ]; then
  for f in $found; do
    echo "=== sanitizer report $f"
    cat "$f"
  done
  echo "sanitized-ctest: $(echo "$found" | wc -l) sanitizer report(s) in $reports" >&2
  exit 1
fi
echo "sanitized-ctest: no sanitizer reports (ctest exit $status)"
exit $status
