#!/usr/bin/env bash
# A rolling restart behind Debian's haproxy, measured: two shoald instances
# behind deploy/haproxy/haproxy.cfg (send-proxy-v2, /readyz checks), N
# WebSocket clients echoing through it (one message per 100 ms each), one
# instance stopped with SIGTERM. Prints, for shutdown.drain_spread 0s, 2s and
# 10s (the default), when the stopped instance's clients reconnected to the
# survivor and the peak per 100 ms, plus failed connects and lost echoes.
# The runs are the disabled benchmark in tests/haproxy_test.cpp (ctest
# skips it); results go to loadtest/results/rolling-restart.md.
#
#   loadtest/rolling-restart.sh [BUILD_DIR] [CLIENTS]     # build, 200
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
clients=${2:-200}
[ -x "$build/tests/haproxy_test" ] || { echo "build $build first (make build)" >&2; exit 1; }
command -v haproxy >/dev/null || { echo "haproxy is missing (deploy/install-deps.sh)" >&2; exit 1; }
out=loadtest/results/rolling-restart.md
lines=$(SHOAL_BENCH_CLIENTS=$clients timeout 600 "$build/tests/haproxy_test" \
  --gtest_also_run_disabled_tests --gtest_filter='DISABLED_RollingRestartBench.*' | grep '^bench:')
echo "$lines"
{
  echo "# Rolling restart behind HAProxy: reconnects at the surviving instance"
  echo
  echo "\`loadtest/rolling-restart.sh $build $clients\` on $(nproc) cores, $(date -u +%Y-%m-%d),"
  echo "commit $(git rev-parse --short HEAD), $(haproxy -v | head -1)."
  echo
  echo '```'
  echo "$lines"
  echo '```'
} >"$out"
echo "written to $out"
