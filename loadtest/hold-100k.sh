#!/usr/bin/env bash
# loadtest/hold-100k.sh BIN_DIR OUT_DIR: the 114,000-connection scenario
# (loadtest/scenarios/100k.yaml: 1 % echoing at 11,400 msgs/s for 30 s) against
# six shoald processes on one port (loadtest/configs/shoald-100k.yaml), then
# against six yardstick processes on one port, then against six shoald
# processes with keepalive pings off (what the keepalive round inside the
# window costs), from binaries packed by loadtest/pack-binaries.sh, so it runs
# on a machine without shoal's packages (the 16-core `device` machine) as on
# this one. Each run prints its p99 by second and the machine's busy CPUs by
# second beside shoal-load's summary. Bounded: each run by shoal-load's own
# limits and timeout(1).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(cd "${1:?usage: hold-100k.sh BIN_DIR OUT_DIR}" && pwd)
OUT=${2:?usage: hold-100k.sh BIN_DIR OUT_DIR}
mkdir -p "$OUT"
. "$ROOT/loadtest/packed-lib.sh"
describe_machine

config=$ROOT/loadtest/configs/shoald-100k.yaml
sed -e 's/ping_interval: 30s/ping_interval: 0s/' -e 's/port: 1710\([01]\)$/port: 1730\1/' "$config" > "$OUT/shoald-100k-nokeepalive.yaml"

cpu_by_second() {  # busy CPUs (user+system+softirq...) each second until killed
  local prev now
  prev=$(head -1 /proc/stat)
  while sleep 1; do
    now=$(head -1 /proc/stat)
    printf '%s\n%s\n' "$prev" "$now" | awk -v n="$(nproc)" '
      { idle[NR] = $5 + $6; total[NR] = 0; for (i = 2; i <= 9; i++) total[NR] += $i }
      END { t = total[2] - total[1]; if (t > 0) printf "%.2f ", n * (1 - (idle[2] - idle[1]) / t) }'
    prev=$now
  done
}

run() {  # name port: start six servers, run the scenario, stop them
  local name=$1 port=$2 pids="" i sampler
  for i in 1 2 3 4 5 6; do
    case $name in
      shoald) "${RUN_WITH[@]}" "$BIN/shoald" --config "$config" > "$OUT/$name.$i.log" 2>&1 & ;;
      shoald-nokeepalive)
        "${RUN_WITH[@]}" "$BIN/shoald" --config "$OUT/shoald-100k-nokeepalive.yaml" > "$OUT/$name.$i.log" 2>&1 & ;;
      yardstick) "${RUN_WITH[@]}" "$BIN/shoal-baseline" -a 127.0.0.1 -p 17200 -w "$port" -t 1 > "$OUT/$name.$i.log" 2>&1 & ;;
    esac
    pids+=" $!"
    wait_line "$OUT/$name.$i.log" 'ready:' || echo "$name $i did not start"
  done
  cpu_by_second > "$OUT/100k.$name.cpu" &
  sampler=$!
  timeout 300 "${RUN_WITH[@]}" "$BIN/shoal-load" --scenario "$ROOT/loadtest/scenarios/100k.yaml" \
    "ws://127.0.0.1:$port/" --server-pid "$(echo $pids | tr ' ' ',')" --json "$OUT/100k.$name.json" \
    --csv "$OUT/100k.$name.csv" -q > "$OUT/100k.$name.txt" 2>&1
  echo "== $name (exit $?)"
  kill "$sampler" 2> /dev/null
  cat "$OUT/100k.$name.txt"
  echo "  p99 by second (ms), measured window:"
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "p99_us") c = i; next }
           $2 == "measure" { printf "%.1f ", $c / 1000 } END { print "" }' "$OUT/100k.$name.csv" | fold -s -w 78 | sed 's/^/    /'
  echo "  busy CPUs by second, whole run:"
  fold -s -w 78 "$OUT/100k.$name.cpu" | sed 's/^/    /'
  echo
  kill -TERM $pids 2> /dev/null
  sleep 2
  kill -KILL $pids 2> /dev/null
  wait 2> /dev/null
  sleep 5
}

run shoald 17101
run yardstick 17201
run shoald-nokeepalive 17301
