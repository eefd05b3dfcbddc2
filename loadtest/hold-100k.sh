#!/usr/bin/env bash
# loadtest/hold-100k.sh BIN_DIR OUT_DIR: the 114,000-connection scenario
# (loadtest/scenarios/100k.yaml: 1 % echoing at 11,400 msgs/s for 30 s) against
# six shoald processes on one port (loadtest/configs/shoald-100k.yaml), then
# against six yardstick processes on one port, from binaries packed by
# loadtest/pack-binaries.sh, so it runs on a machine without shoal's
# packages (the 16-core `device` machine) as on this one. Bounded: each run
# by shoal-load's own limits and timeout(1).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "${1:?usage: hold-100k.sh BIN_DIR OUT_DIR}" && pwd)
OUT=${2:?usage: hold-100k.sh BIN_DIR OUT_DIR}
mkdir -p "$OUT"
. "$ROOT/loadtest/packed-lib.sh"
describe_machine

run() {  # name port: start six servers, run the scenario, stop them
  local name=$1 port=$2 pids="" i
  for i in 1 2 3 4 5 6; do
    if [ "$name" = shoald ]; then
      "${RUN_WITH[@]}" "$BIN/shoald" --config "$ROOT/loadtest/configs/shoald-100k.yaml" > "$OUT/$name.$i.log" 2>&1 &
      pids+=" $!"
      wait_line "$OUT/$name.$i.log" 'ready:' || echo "shoald $i did not start"
    else
      "${RUN_WITH[@]}" "$BIN/shoal-baseline" -a 127.0.0.1 -p 17200 -w "$port" -t 1 > "$OUT/$name.$i.log" 2>&1 &
      pids+=" $!"
      wait_line "$OUT/$name.$i.log" 'ready' || echo "yardstick $i did not start"
    fi
  done
  timeout 300 "${RUN_WITH[@]}" "$BIN/shoal-load" --scenario "$ROOT/loadtest/scenarios/100k.yaml" \
    "ws://127.0.0.1:$port/" --server-pid "$(echo $pids | tr ' ' ',')" --json "$OUT/100k.$name.json" -q \
    > "$OUT/100k.$name.txt" 2>&1
  echo "== $name (exit $?)"
  cat "$OUT/100k.$name.txt"
  kill -TERM $pids 2> /dev/null
  sleep 2
  kill -KILL $pids 2> /dev/null
  wait 2> /dev/null
  sleep 1
}

run shoald 17101
run yardstick 17201
