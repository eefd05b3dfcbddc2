#!/usr/bin/env bash
# loadtest/shard-scaling.sh: throughput per shard count on a larger machine.
#
# For each shard count N (default 1 2 4 8 16), each server is started with N
# threads (shoald with `shards: N`, the yardstick with -t N, Tokio with N
# workers) and driven by the same client: shoal-load with CLIENT_THREADS
# threads, 1,000 connections x 16 in flight, 64-byte messages, over loopback.
# Every run is bounded (--max-time, timeout(1)). Nothing is built here: the
# binaries come prepared from loadtest/pack-binaries.sh, so the script runs on
# a machine that has none of shoal's packages (the `device` machine).
#
#   loadtest/pack-binaries.sh build .bin       # here: binaries + their libraries
#   loadtest/shard-scaling.sh .bin OUT_DIR     # there: OUT_DIR/scaling.md
#
# Environment: SHARDS ("1 2 4 8 16"), CLIENT_THREADS (8), CONNS (1000),
# DURATION (3s), WARMUP (1s), PROTOS ("tcp ws"), SERVERS ("yardstick shoald tokio").
set -uo pipefail

BIN=$(cd "${1:?usage: shard-scaling.sh BIN_DIR OUT_DIR}" && pwd)
OUT=${2:?usage: shard-scaling.sh BIN_DIR OUT_DIR}
mkdir -p "$OUT"
SHARDS=${SHARDS:-1 2 4 8 16}
CLIENT_THREADS=${CLIENT_THREADS:-8}
CONNS=${CONNS:-1000}
DURATION=${DURATION:-3s}
WARMUP=${WARMUP:-1s}
PROTOS=${PROTOS:-tcp ws}
SERVERS=${SERVERS:-yardstick shoald tokio}
RUN=$(mktemp -d "${TMPDIR:-/tmp}/shoal-scaling.XXXXXX")

. "$(dirname "$0")/packed-lib.sh"
log() { echo "scaling: $(date +%T) $*" >&2; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

describe_machine "client: shoal-load -t $CLIENT_THREADS -c $CONNS --pipeline 16 --size 64 --warmup $WARMUP --duration $DURATION"

SPID="" PORT=""
start() {  # server proto shards
  local server=$1 proto=$2 n=$3 slog="$RUN/$1.$2.$3.log"
  PORT=""
  case $server in
    yardstick)
      "${RUN_WITH[@]}" "$BIN/shoal-baseline" -a 127.0.0.1 -p 0 -w 0 -t "$n" > "$slog" 2>&1 &
      SPID=$!
      wait_line "$slog" 'ready' || return 1
      if [ "$proto" = ws ]; then
        PORT=$(grep -oP 'websocket-echo listening on .*:\K\d+' "$slog")
      else
        PORT=$(grep -oP 'tcp-echo listening on .*:\K\d+' "$slog")
      fi ;;
    shoald)
      cat > "$RUN/shoald.$n.yaml" <<EOF
shards: $n
sharding: reuseport
listeners:
  - {name: echo, protocol: tcp-echo, address: 127.0.0.1, port: 0}
  - {name: ws, protocol: websocket-echo, address: 127.0.0.1, port: 0}
admin: {port: 0}
shutdown: {drain_timeout: 1s}
EOF
      "${RUN_WITH[@]}" "$BIN/shoald" --config "$RUN/shoald.$n.yaml" > "$slog" 2>&1 &
      SPID=$!
      wait_line "$slog" 'ready:' || return 1
      if [ "$proto" = ws ]; then
        PORT=$(grep -oP 'listener "ws" \(websocket-echo\) listening on .*:\K\d+' "$slog")
      else
        PORT=$(grep -oP 'listener "echo" \(tcp-echo\) listening on .*:\K\d+' "$slog")
      fi ;;
    tokio)
      [ "$proto" = tcp ] && [ -x "$BIN/tokio-echo" ] || return 2
      PORT=$(free_port)
      "${RUN_WITH[@]}" "$BIN/tokio-echo" "127.0.0.1:$PORT" "$n" > "$slog" 2>&1 &
      SPID=$!
      wait_line "$slog" 'ready' || return 1 ;;
  esac
  [ -n "$PORT" ]
}
stop() {
  [ -n "$SPID" ] || return 0
  kill -TERM "$SPID" 2> /dev/null
  for _ in $(seq 50); do kill -0 "$SPID" 2> /dev/null || break; sleep 0.1; done
  kill -KILL "$SPID" 2> /dev/null
  wait "$SPID" 2> /dev/null
  SPID=""
}
trap stop EXIT

echo -e "proto\tserver\tshards\texit\tmsgs_per_s\tserver_cpu_ns_per_msg\tp99_us\terrors" > "$OUT/scaling.tsv"
for proto in $PROTOS; do
  for n in $SHARDS; do
    for server in $SERVERS; do
      start "$server" "$proto" "$n"
      case $? in
        0) ;;
        2) stop; continue ;;
        *) log "$server did not start: $(tail -c 300 "$RUN/$server.$proto.$n.log")"; stop; continue ;;
      esac
      url="tcp://127.0.0.1:$PORT"
      [ "$proto" = ws ] && url="ws://127.0.0.1:$PORT/"
      json="$RUN/$proto.$server.$n.json"
      timeout 60 "${RUN_WITH[@]}" "$BIN/shoal-load" "$url" -t "$CLIENT_THREADS" -c "$CONNS" --pipeline 16 \
        --size 64 --warmup "$WARMUP" --duration "$DURATION" --server-pid "$SPID" --json "$json" -q \
        > "$RUN/$proto.$server.$n.txt" 2>&1
      rc=$?
      stop
      line=$(python3 - "$json" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    print("-\t-\t-\t-"); sys.exit()
errors = sum(v for v in d.get("errors", {}).values() if isinstance(v, (int, float)))
print("%.0f\t%.0f\t%.0f\t%d" % (d["throughput"]["msgs_per_s"],
      d.get("server", {}).get("cpu_ns_per_msg") or 0, d["latency"]["p99_us"], errors))
PY
)
      echo -e "$proto\t$server\t$n\t$rc\t$line" >> "$OUT/scaling.tsv"
      log "$proto $server shards=$n exit=$rc: $line"
      sleep 0.3
    done
  done
done

# The table: msgs/s per shard count, with each server's ratio to the yardstick
# at the same thread count and its speed-up over its own 1-shard figure.
python3 - "$OUT/scaling.tsv" "$OUT/machine.txt" > "$OUT/scaling.md" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("```\n" + open(sys.argv[2]).read().strip() + "\n```\n")
def num(r):
    try: return float(r["msgs_per_s"])
    except ValueError: return None
for proto in ("tcp", "ws"):
    sub = [r for r in rows if r["proto"] == proto]
    if not sub: continue
    servers = list(dict.fromkeys(r["server"] for r in sub))
    shards = sorted({int(r["shards"]) for r in sub})
    get = {(r["server"], int(r["shards"])): r for r in sub}
    print(f"### {proto}: msgs/s (x yardstick at the same threads; speed-up over 1 shard)\n")
    print("| threads | " + " | ".join(servers) + " |")
    print("|---:|" + "---:|" * len(servers))
    for n in shards:
        cells = []
        y = get.get(("yardstick", n))
        for s in servers:
            r = get.get((s, n))
            v = num(r) if r else None
            if v is None:
                cells.append("-"); continue
            one = get.get((s, shards[0]))
            base = num(one) if one else None
            c = f"{v:,.0f}"
            extra = []
            if y and num(y) and s != "yardstick": extra.append(f"{v / num(y):.2f}x")
            if base: extra.append(f"{v / base:.2f}x of 1")
            cpu = r["server_cpu_ns_per_msg"]
            if cpu not in ("-", "0"): extra.append(f"{cpu} ns/msg")
            if r["errors"] not in ("0", "-"): extra.append(f"{r['errors']} errors")
            cells.append(c + (" (" + ", ".join(extra) + ")" if extra else ""))
        print(f"| {n} | " + " | ".join(cells) + " |")
    print()
PY
cat "$OUT/scaling.md"
