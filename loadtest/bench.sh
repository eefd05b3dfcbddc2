#!/usr/bin/env bash
# loadtest/bench.sh: one run, every server, the same scenarios.
#
# Each server is started fresh for each scenario with 2 threads (shoald with
# loadtest/configs/shoald-bench.yaml), driven by shoal-load over loopback,
# measured (--server-pid: RSS and CPU from /proc) and stopped. The results go
# to stdout and to loadtest/results/latest.md as markdown tables with ratios
# to the yardstick (shoal-baseline, a minimal epoll echo in C), beside the
# machine description and the exact commands. Benchmarks are not tests: this
# script is not run by ctest.
#
#   loadtest/peers/build-peers.sh     # once: Beast examples, Tokio, node ws
#   loadtest/bench.sh                 # about 20 minutes (2 cores)
#
# The throughput, ping-pong and latency scenarios run ROUNDS times, the
# servers taking turns within each round, and every figure reported is the
# median of its rounds: on a shared VM one run of a server can differ from
# the next by 20-30 %, and servers run minutes apart would be compared across
# that drift.
#
# Environment:
#   BUILD_DIR   Release build to use/make (default: build-bench)
#   DURATION    measured seconds per run (default 5s); WARMUP (default 1s)
#   ROUNDS      rounds of the throughput, ping-pong and latency scenarios
#               (default 5)
#   SERVERS     which servers (default: all built): yardstick shoald tokio
#               beast-async beast-fast node-ws
#   SCENARIOS   which scenarios (default: all): throughput pingpong latency
#               memory connect balance tls 100k
#               memory: idle TCP and WS at 10,000 and 19,000, and 1,000 x 16
#               under load then held 1 s; private (RssAnon) and VmRSS per
#               connection, the host kernel's slab and TCP buffer pages
#               tls: shoald's TLS echo and wss:// (self-signed certificate made
#               per run, verified by the client with --ca), with HAProxy
#               (Debian's haproxy) terminating TLS in front of plaintext shoald
#               beside it: idle memory, wss throughput next to ws://, 10,000
#               handshakes, 19,000 idle wss connections. About 3 minutes.
#               (HAProxy runs as two processes of one thread on one port: see
#               configs/haproxy-bench-tls.cfg.)
#               pubsub: shoald's websocket-pubsub listener
#               (configs/shoald-bench-pubsub.yaml) driven by shoal-load --mode
#               pubsub: 1 publisher -> 10,000 subscribers on one channel at one
#               instance; the same with the subscribers at one instance and the
#               publisher at another, joined by a redis-server (Debian's) this
#               script starts on a free loopback port; 1,000 channels x 10
#               subscribers, one publisher each. Deliveries/s and publish ->
#               delivery latency. Under a minute.
#   TLS_ROUNDS  rounds of the wss-versus-ws throughput rows (default 3)
#   PUBSUB_RATE messages/s of each publisher in the pubsub rows (default 20:
#               200,000 deliveries/s in each row; at 30 both cores are
#               busy and p99 goes past 100 ms)
#   OUT_MD      where the table goes (default loadtest/results/latest.md)
#   README      whose performance table (between the bench-summary markers)
#               is rewritten from this run when every scenario ran
#               (default README.md; README= leaves it alone)
# Every run is bounded (shoal-load --max-time and timeout(1)); only loopback
# addresses are used.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build-bench}
PEERS_ENV=${PEERS_ENV:-$ROOT/loadtest/peers/build/peers.env}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-5}
WARMUP=${WARMUP:-1s}
THREADS=2
SCENARIOS=${SCENARIOS:-throughput pingpong latency memory connect balance tls pubsub 100k}
TLS_ROUNDS=${TLS_ROUNDS:-3}
PUBSUB_RATE=${PUBSUB_RATE:-20}
OUT_MD=${OUT_MD:-$ROOT/loadtest/results/latest.md}
README=${README-$ROOT/README.md}
ALL_SCENARIOS="throughput pingpong latency memory connect balance tls pubsub 100k"
RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/shoal-bench.XXXXXX")
{ git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo "?"
  git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo "(plus uncommitted changes)"; } | paste -sd' ' > "$RUN_DIR/commit"
# The client: one worker process, two threads (shoal-load picks more workers
# by itself when a run needs more than 18,000 sockets).
CLIENT_ARGS=(-t 2)

log() { echo "bench: $(date +%T) $*" >&2; }

# --- build ----------------------------------------------------------------
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release > "$RUN_DIR/cmake.log" 2>&1 ||
    { cat "$RUN_DIR/cmake.log"; exit 1; }
fi
grep -q '^CMAKE_BUILD_TYPE:STRING=Release' "$BUILD_DIR/CMakeCache.txt" ||
  log "warning: $BUILD_DIR is not a Release build"
cmake --build "$BUILD_DIR" -j "$(nproc)" --target shoald shoal-load shoal-baseline > "$RUN_DIR/build.log" 2>&1 ||
  { tail -30 "$RUN_DIR/build.log"; exit 1; }
LOAD=$BUILD_DIR/loadtest/shoal-load
SHOALD=$BUILD_DIR/server/shoald
BASELINE=$BUILD_DIR/loadtest/shoal-baseline

declare -A PEER
if [ -f "$PEERS_ENV" ]; then
  while IFS='=' read -r k v; do
    [[ -z "$k" || "$k" == \#* ]] && continue
    [ -e "$v" ] && PEER[$k]=$v
  done < "$PEERS_ENV"
else
  log "no $PEERS_ENV: run loadtest/peers/build-peers.sh for the peers; benchmarking shoald and the yardstick only"
fi
ALL_SERVERS="yardstick shoald"
for p in tokio-echo beast-async beast-fast node-ws; do
  [ -n "${PEER[$p]:-}" ] && ALL_SERVERS+=" ${p/tokio-echo/tokio}"
done
SERVERS=${SERVERS:-$ALL_SERVERS}
log "servers: $SERVERS; scenarios: $SCENARIOS; results in $RUN_DIR"

# --- servers ----------------------------------------------------------------
free_port() {  # a free loopback port; with an argument N, N free ports in a row
  python3 - "${1:-1}" <<'PY'
import socket, sys
need = int(sys.argv[1])
def free(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()
for _ in range(1000):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    if p + need <= 65535 and all(free(p + k) for k in range(1, need)):
        print(p)
        break
PY
}

wait_port() {  # port: wait until it accepts (20 s)
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0
    sleep 0.1
  done
  return 1
}

wait_line() {  # file, pattern: wait until the file has a matching line (10 s)
  for _ in $(seq 100); do
    grep -qE "$2" "$1" 2> /dev/null && return 0
    sleep 0.1
  done
  return 1
}

SPID="" TCP_PORT="" WS_PORT="" TLS_PORT="" WSS_PORT="" SLOG="" HAPIDS=""
# The shoald config of the next start_server when none is given (the tls
# rows set it to their TLS config).
CASE_CONFIG=""
# What HAProxy forwards to: shoald's plaintext "echo" (a tls:// row) or "ws"
# (a wss:// row); run_case sets it from the row's protocol.
HAPROXY_TO=tls
start_server() {  # name [config]
  local name=$1 config=${2:-${CASE_CONFIG:-$ROOT/loadtest/configs/shoald-bench.yaml}} port
  SLOG="$RUN_DIR/server.$name.$RANDOM.log"
  TCP_PORT="" WS_PORT="" TLS_PORT="" WSS_PORT="" HAPIDS=""
  case $name in
    yardstick)
      "$BASELINE" -a 127.0.0.1 -p 0 -w 0 -t $THREADS > "$SLOG" 2>&1 &
      SPID=$!
      wait_line "$SLOG" 'ready' || return 1
      TCP_PORT=$(grep -oP 'tcp-echo listening on .*:\K\d+' "$SLOG")
      WS_PORT=$(grep -oP 'websocket-echo listening on .*:\K\d+' "$SLOG") ;;
    shoald)
      "$SHOALD" --config "$config" > "$SLOG" 2>&1 &
      SPID=$!
      wait_line "$SLOG" 'ready:' || return 1
      TCP_PORT=$(grep -oP 'listener "echo" \(tcp-echo\) listening on .*:\K\d+' "$SLOG")
      WS_PORT=$(grep -oP 'listener "ws" \(websocket-echo\) listening on .*:\K\d+' "$SLOG")
      TLS_PORT=$(grep -oP 'listener "tls" \(tcp-echo\) listening on .*:\K\d+' "$SLOG")
      WSS_PORT=$(grep -oP 'listener "wss" \(websocket-echo\) listening on .*:\K\d+' "$SLOG")
      true ;;  # a config without TLS listeners has no tls/wss port: not a failed start
    haproxy)
      # HAProxy terminating TLS in front of plaintext shoald: shoald's "echo"
      # listener behind two HAProxy processes on one port (see
      # configs/haproxy-bench-tls.cfg). SPID is shoald; HAPIDS the proxies.
      start_server shoald "$config" || return 1
      local backend=$TCP_PORT log=$SLOG hcfg
      [ "$HAPROXY_TO" = wss ] && backend=$WS_PORT
      port=$(free_port)
      hcfg="$RUN_DIR/haproxy.$port.cfg"
      sed -e "s|@PORT@|$port|" -e "s|@PEM@|$TLS_PEM|" -e "s|@BACKEND@|$backend|" \
        "$ROOT/loadtest/configs/haproxy-bench-tls.cfg" > "$hcfg"
      SLOG="$RUN_DIR/server.haproxy.$port.log"
      for _ in 1 2; do
        haproxy -db -f "$hcfg" >> "$SLOG" 2>&1 &
        HAPIDS+=" $!"
      done
      # Both must be bound before the first connection, or one would get them all.
      for _ in $(seq 100); do
        [ "$(ss -Hltn "sport = :$port" | wc -l)" -ge 2 ] && break
        sleep 0.1
      done
      [ "$(ss -Hltn "sport = :$port" | wc -l)" -ge 2 ] || { cat "$SLOG" >&2; return 1; }
      cat "$log" >> "$SLOG"
      TCP_PORT="" WS_PORT="" WSS_PORT=$port TLS_PORT=$port ;;
    tokio)
      port=$(free_port)
      "${PEER[tokio-echo]}" "127.0.0.1:$port" $THREADS > "$SLOG" 2>&1 &
      SPID=$!
      wait_line "$SLOG" 'ready' || return 1
      TCP_PORT=$port ;;
    beast-async)
      port=$(free_port)
      "${PEER[beast-async]}" 127.0.0.1 "$port" $THREADS > "$SLOG" 2>&1 &
      SPID=$!
      wait_port "$port" || return 1
      WS_PORT=$port ;;
    beast-fast)
      port=$(free_port 3)
      "${PEER[beast-fast]}" 127.0.0.1 "$port" $THREADS > "$SLOG" 2>&1 &
      SPID=$!
      wait_port $((port + 1)) || return 1
      WS_PORT=$((port + 1)) ;;  # its asynchronous port
    node-ws)
      port=$(free_port)
      NODE_PATH=/usr/share/nodejs node "${PEER[node-ws]}" "$port" $THREADS > "$SLOG" 2>&1 &
      SPID=$!
      wait_line "$SLOG" 'ready' || return 1
      WS_PORT=$port ;;
  esac
}

server_pids() {  # the server and its children (node's cluster workers); proxies first
  local kids haps
  kids=$(pgrep -P "$SPID" | paste -sd, -)
  haps=$(echo $HAPIDS | tr ' ' ',')
  echo "${haps:+$haps,}$SPID${kids:+,$kids}"
}

stop_server() {
  for p in $HAPIDS; do kill -TERM "$p" 2> /dev/null; done
  for p in $HAPIDS; do wait "$p" 2> /dev/null; done
  HAPIDS=""
  [ -n "$SPID" ] || return 0
  local kids
  kids=$(pgrep -P "$SPID")
  kill -TERM "$SPID" 2> /dev/null
  for _ in $(seq 50); do
    kill -0 "$SPID" 2> /dev/null || break
    sleep 0.1
  done
  kill -KILL "$SPID" $kids 2> /dev/null
  wait "$SPID" 2> /dev/null
  SPID=""
}
trap 'stop_server; for p in ${EXTRA_PIDS:-} ${HAPIDS:-}; do kill -KILL $p 2>/dev/null; done' EXIT

echo -e "scenario\tproto\tserver\texit\tjson\tcommand\tround" > "$RUN_DIR/index.tsv"

# run_case SCENARIO PROTO SERVER ROUND [shoal-load options...]
run_case() {
  local scenario=$1 proto=$2 server=$3 round=$4
  shift 4
  local tries=0
  HAPROXY_TO=$proto
  until start_server "$server"; do
    stop_server
    tries=$((tries + 1))
    if [ $tries -ge 3 ]; then log "$server did not start: $(tail -c 300 "$SLOG")"; return; fi
  done
  local port url
  case $proto in
    tcp) port=$TCP_PORT url="tcp://127.0.0.1:$port" ;;
    ws) port=$WS_PORT url="ws://127.0.0.1:$port/" ;;
    tls) port=$TLS_PORT url="tls://127.0.0.1:$port" ;;
    wss) port=$WSS_PORT url="wss://127.0.0.1:$port/" ;;
  esac
  if [ -z "$port" ]; then stop_server; return; fi
  local json="$RUN_DIR/$scenario.$proto.$server.r$round.json"
  local cmd=("$LOAD" "$url" "${CLIENT_ARGS[@]}" "$@" --server-pid "$(server_pids)" --json "$json" -q)
  log "$scenario $proto $server (round $round): shoal-load $url ${CLIENT_ARGS[*]} $*"
  timeout 300 "${cmd[@]}" > "$RUN_DIR/$scenario.$proto.$server.r$round.txt" 2>&1
  local rc=$?
  [ $rc -ne 0 ] && log "  exit $rc: $(grep -m1 verdict "$RUN_DIR/$scenario.$proto.$server.r$round.txt")"
  stop_server
  # Let TIME_WAIT and the server's memory settle between runs.
  sleep 0.5
  echo -e "$scenario\t$proto\t$server\t$rc\t$json\tshoal-load URL ${CLIENT_ARGS[*]} $*\t$round" >> "$RUN_DIR/index.tsv"
}

has() { [[ " $SCENARIOS " == *" $1 "* ]]; }

speaks() {  # server proto: whether the server has that listener
  case "$1:$2" in
    yardstick:* | shoald:* | tokio:tcp | beast-async:ws | beast-fast:ws | node-ws:ws) return 0 ;;
    *) return 1 ;;
  esac
}

declare -A LOAD_ARGS=(
  [throughput]="-c 1000 --pipeline 16 --size 64 --warmup $WARMUP --duration $DURATION"
  [pingpong]="-c 1000 --pipeline 1 --size 64 --warmup $WARMUP --duration $DURATION"
  [latency]="-c 1000 --rate 20000 --size 64 --warmup $WARMUP --duration $DURATION"
)
for proto in tcp ws; do
  for scenario in throughput pingpong latency; do
    has $scenario || continue
    for round in $(seq "$ROUNDS"); do
      for server in $SERVERS; do
        speaks "$server" "$proto" || continue
        # shellcheck disable=SC2086  # the options are words
        run_case $scenario $proto $server "$round" ${LOAD_ARGS[$scenario]}
      done
    done
  done
  for server in $SERVERS; do
    speaks "$server" "$proto" || continue
    if has memory; then
      # Paced connects: this row is about memory, not about the accept queue.
      run_case memory-10k $proto $server 1 -c 10000 --connect-rate 10000 --active 0 --duration 0 --hold 2s
      run_case memory-19k $proto $server 1 -c 19000 --connect-rate 10000 --active 0 --duration 0 --hold 2s
      # Memory under load, and 1 s after it stops (the held sample).
      run_case memory-load $proto $server 1 -c 1000 --pipeline 16 --size 64 --warmup 1s --duration 5s --hold 1s
    fi
    has connect && run_case connect $proto $server 1 -c 10000 --active 0 --duration 0 --connect-concurrency 512
  done
done

# Balance: shoald's two sharding policies, share of connections per shard
# (from the per-shard totals shoald prints when it stops).
if has balance && [[ " $SERVERS " == *" shoald "* ]]; then
  for policy in reuseport dispatch; do
    config=$ROOT/loadtest/configs/shoald-bench.yaml
    [ $policy = dispatch ] && config=$ROOT/loadtest/configs/shoald-bench-dispatch.yaml
    start_server shoald "$config" || continue
    json="$RUN_DIR/balance.tcp.$policy.json"
    log "balance $policy: shoal-load tcp://127.0.0.1:$TCP_PORT -c 1000 --pipeline 16 --duration $DURATION"
    timeout 300 "$LOAD" "tcp://127.0.0.1:$TCP_PORT" "${CLIENT_ARGS[@]}" -c 1000 --pipeline 16 --size 64 \
      --warmup "$WARMUP" --duration "$DURATION" --server-pid "$SPID" --json "$json" -q > /dev/null 2>&1
    rc=$?
    stop_server
    cp "$SLOG" "$RUN_DIR/balance.$policy.server.log"
    echo -e "balance\ttcp\t$policy\t$rc\t$json\tshoal-load URL ${CLIENT_ARGS[*]} -c 1000 --pipeline 16 --size 64 --warmup $WARMUP --duration $DURATION\t1" >> "$RUN_DIR/index.tsv"
  done
fi

# TLS: shoald's TLS echo and wss:// listeners (shoald-bench-tls.yaml, a
# self-signed EC P-256 certificate made here and trusted by the client with
# --ca), and HAProxy terminating TLS in front of plaintext shoald. Memory rows
# hold connections idle after the handshake (and upgrade) and one echo each.
if has tls && [[ " $SERVERS " == *" shoald "* ]]; then
  TLS_CERT=$RUN_DIR/tls-cert.pem TLS_KEY=$RUN_DIR/tls-key.pem TLS_PEM=$RUN_DIR/tls-haproxy.pem
  if ! openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=shoal-bench \
      -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout "$TLS_KEY" -out "$TLS_CERT" > "$RUN_DIR/openssl.log" 2>&1; then
    log "tls: openssl req failed: $(tail -c 300 "$RUN_DIR/openssl.log")"
  else
    cat "$TLS_CERT" "$TLS_KEY" > "$TLS_PEM"
    CASE_CONFIG=$RUN_DIR/shoald-bench-tls.yaml
    sed -e "s|@CERT@|$TLS_CERT|" -e "s|@KEY@|$TLS_KEY|" "$ROOT/loadtest/configs/shoald-bench-tls.yaml" > "$CASE_CONFIG"
    HAVE_HAPROXY=""
    if command -v haproxy > /dev/null; then
      HAVE_HAPROXY=1
      haproxy -v 2>&1 | head -1 > "$RUN_DIR/haproxy-version"
    else
      log "tls: no haproxy (apt-get install haproxy): its rows are left out"
    fi
    IDLE=(--messages 1 --duration 1s --hold 2s)
    # shellcheck disable=SC2086
    for round in $(seq "$TLS_ROUNDS"); do
      run_case tls-throughput ws shoald "$round" ${LOAD_ARGS[throughput]}
      run_case tls-throughput wss shoald "$round" ${LOAD_ARGS[throughput]} --ca "$TLS_CERT"
      [ -n "$HAVE_HAPROXY" ] && run_case tls-throughput wss haproxy "$round" ${LOAD_ARGS[throughput]} --ca "$TLS_CERT"
    done
    run_case tls-memory-10k tls shoald 1 -c 10000 --connect-rate 10000 "${IDLE[@]}" --ca "$TLS_CERT"
    [ -n "$HAVE_HAPROXY" ] && run_case tls-memory-10k tls haproxy 1 -c 10000 --connect-rate 10000 "${IDLE[@]}" --ca "$TLS_CERT"
    run_case tls-memory-10k wss shoald 1 -c 10000 --connect-rate 10000 "${IDLE[@]}" --ca "$TLS_CERT"
    run_case tls-connect tls shoald 1 -c 10000 --active 0 --duration 0 --connect-concurrency 512 --ca "$TLS_CERT"
    [ -n "$HAVE_HAPROXY" ] && run_case tls-connect tls haproxy 1 -c 10000 --active 0 --duration 0 --connect-concurrency 512 --ca "$TLS_CERT"
    # Over one worker's 18,000 sockets: shoal-load forks two by itself.
    run_case tls-memory-19k wss shoald 1 -c 19000 --connect-rate 10000 --active 0 --duration 0 --hold 5s --ca "$TLS_CERT"
    CASE_CONFIG=""
  fi
fi

# Pubsub: shoald's websocket-pubsub listener. Each row's 10,000 subscribers
# (and 1 or 1,000 publishers) are one shoal-load worker (two threads), under
# its 18,000 sockets and this host's 20,000 descriptors per process; each
# shoald holds at most 10,000 of them. Every publisher sends PUBSUB_RATE
# msgs/s, so the fan-out rows and the channels row deliver the same
# 200,000 messages/s (default) and differ in how: one message to 10,000
# connections, or 1,000 messages to 10 each. The Redis row runs two shoald
# processes joined by a redis-server started here; --server-pid covers both
# and Redis.
if has pubsub && [[ " $SERVERS " == *" shoald "* ]]; then
  PS_TEMPLATE=$ROOT/loadtest/configs/shoald-bench-pubsub.yaml
  PS_SINGLE=$RUN_DIR/shoald-bench-pubsub.yaml
  sed -e '/^ *pubsub:/d' -e '/^ *redis:/d' "$PS_TEMPLATE" > "$PS_SINGLE"
  PS_PIDS="" PS_PORTS=()
  start_pubsub() {  # config: one more shoald; its pid to PS_PIDS, its port to PS_PORTS
    local log="$RUN_DIR/server.pubsub.$RANDOM.log" port
    "$SHOALD" --config "$1" > "$log" 2>&1 &
    local pid=$!
    PS_PIDS+=" $pid"
    EXTRA_PIDS="${EXTRA_PIDS:-} $pid"
    wait_line "$log" 'ready:' || { log "pubsub: shoald did not start: $(tail -c 300 "$log")"; return 1; }
    port=$(grep -oP 'listener "ps" \(websocket-pubsub\) listening on .*:\K\d+' "$log")
    [ -n "$port" ] || { log "pubsub: no websocket-pubsub listener in $log"; return 1; }
    PS_PORTS+=("$port")
  }
  stop_pubsub() {
    local p
    for p in $PS_PIDS; do kill -TERM "$p" 2> /dev/null; done
    for p in $PS_PIDS; do
      for _ in $(seq 50); do kill -0 "$p" 2> /dev/null || break; sleep 0.1; done
      kill -KILL "$p" 2> /dev/null
      wait "$p" 2> /dev/null
    done
    PS_PIDS="" PS_PORTS=()
    sleep 0.5
  }
  # run_pubsub NAME SUB_PORT PUB_PORT PIDS [shoal-load options...]
  run_pubsub() {
    local name=$1 sub=$2 pub=$3 pids=$4
    shift 4
    local json="$RUN_DIR/$name.ws.shoald.r1.json"
    local args=(--mode pubsub --subscribe-url "ws://127.0.0.1:$sub/?channel=bench"
      --publish-url "ws://127.0.0.1:$pub/?channel=bench" "${CLIENT_ARGS[@]}" --connect-rate 10000
      --rate "$PUBSUB_RATE" --warmup "$WARMUP" --duration "$DURATION" "$@")
    log "$name: shoal-load ${args[*]}"
    timeout 300 "$LOAD" "${args[@]}" --server-pid "$pids" --json "$json" -q > "$RUN_DIR/$name.ws.shoald.r1.txt" 2>&1
    local rc=$?
    [ $rc -ne 0 ] && log "  exit $rc: $(grep -m1 verdict "$RUN_DIR/$name.ws.shoald.r1.txt")"
    local where="ws://127.0.0.1:PORT/?channel=bench"
    [ "$sub" != "$pub" ] && where="ws://127.0.0.1:PORT_A/?channel=bench --publish-url ws://127.0.0.1:PORT_B/?channel=bench"
    local shown="shoal-load --mode pubsub --subscribe-url $where ${args[*]:6}"
    [ "$sub" = "$pub" ] && shown="shoal-load --mode pubsub $where ${args[*]:6}"
    echo -e "$name\tws\tshoald\t$rc\t$json\t$shown\t1" >> "$RUN_DIR/index.tsv"
  }
  if start_pubsub "$PS_SINGLE"; then
    run_pubsub pubsub-fanout "${PS_PORTS[0]}" "${PS_PORTS[0]}" "${PS_PIDS# }" --subscribers 10000 --publishers 1
  fi
  stop_pubsub
  if start_pubsub "$PS_SINGLE"; then
    run_pubsub pubsub-channels "${PS_PORTS[0]}" "${PS_PORTS[0]}" "${PS_PIDS# }" --subscribers 10000 --channels 1000
  fi
  stop_pubsub
  if command -v redis-server > /dev/null; then
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no > "$RUN_DIR/redis.log" 2>&1 &
    REDIS_PID=$!
    EXTRA_PIDS="${EXTRA_PIDS:-} $REDIS_PID"
    redis-server --version | head -1 > "$RUN_DIR/redis-version"
    if wait_port "$REDIS_PORT"; then
      PS_REDIS=$RUN_DIR/shoald-bench-pubsub-redis.yaml
      sed -e "s|@REDIS@|redis://127.0.0.1:$REDIS_PORT|" "$PS_TEMPLATE" > "$PS_REDIS"
      if start_pubsub "$PS_REDIS" && start_pubsub "$PS_REDIS"; then
        # A subscription reaches the other instance through Redis a moment
        # after its upgrade: the first message waits a second for that.
        run_pubsub pubsub-fanout-redis "${PS_PORTS[0]}" "${PS_PORTS[1]}" "$(echo $PS_PIDS $REDIS_PID | tr ' ' ,)" \
          --subscribers 10000 --publishers 1 --settle 1s
      fi
      stop_pubsub
    else
      log "pubsub: redis-server did not start: $(tail -c 300 "$RUN_DIR/redis.log")"
    fi
    kill -TERM "$REDIS_PID" 2> /dev/null
    wait "$REDIS_PID" 2> /dev/null
  else
    log "pubsub: no redis-server (apt-get install redis-server): the row across two instances is left out"
  fi
fi

# 100K: six server processes sharing one port (SO_REUSEPORT), 114,000
# WebSocket connections held 30 s, 1 % echoing at a fixed rate. Three runs:
# shoald as configured (keepalive pings after 30 s of silence, the default),
# the yardstick (which sends no pings), and shoald with pings off, which
# shows what the keepalive round inside the window costs. Each has its own
# port, so that the client's TIME_WAITs of one run do not meet the next.
if has 100k; then
  config=$ROOT/loadtest/configs/shoald-100k.yaml
  nokeepalive=$RUN_DIR/shoald-100k-nokeepalive.yaml
  sed -e 's/ping_interval: 30s/ping_interval: 0s/' -e 's/port: 1710\([01]\)$/port: 1730\1/' "$config" > "$nokeepalive"
  grep -q 'ping_interval: 0s' "$nokeepalive" || log "100k: $nokeepalive still pings (no 'ping_interval: 30s' in $config)"
  for server in shoald yardstick shoald-nokeepalive; do
    [[ " $SERVERS " == *" ${server%-nokeepalive} "* ]] || continue
    case $server in
      shoald) port=17101 what="6 x shoald --config loadtest/configs/shoald-100k.yaml" ;;
      yardstick) port=17201 what="6 x shoal-baseline -a 127.0.0.1 -p 17200 -w 17201 -t 1" ;;
      shoald-nokeepalive) port=17301 what="6 x shoald, shoald-100k.yaml with ping_interval: 0s, ports 17300/17301" ;;
    esac
    EXTRA_PIDS=""
    for i in 1 2 3 4 5 6; do
      case $server in
        shoald) "$SHOALD" --config "$config" > "$RUN_DIR/100k.$server.$i.log" 2>&1 & ;;
        yardstick) "$BASELINE" -a 127.0.0.1 -p 17200 -w "$port" -t 1 > "$RUN_DIR/100k.$server.$i.log" 2>&1 & ;;
        shoald-nokeepalive) "$SHOALD" --config "$nokeepalive" > "$RUN_DIR/100k.$server.$i.log" 2>&1 & ;;
      esac
      EXTRA_PIDS+=" $!"
      wait_line "$RUN_DIR/100k.$server.$i.log" 'ready:' || log "100k: $server $i did not start"
    done
    pids=$(echo $EXTRA_PIDS | tr ' ' ',')
    json="$RUN_DIR/100k.ws.$server.json"
    log "100k: shoal-load --scenario loadtest/scenarios/100k.yaml ws://127.0.0.1:$port/ ($what)"
    timeout 400 "$LOAD" --scenario "$ROOT/loadtest/scenarios/100k.yaml" "ws://127.0.0.1:$port/" \
      --server-pid "$pids" --json "$json" -q > "$RUN_DIR/100k.$server.txt" 2>&1
    rc=$?
    for p in $EXTRA_PIDS; do kill -TERM "$p" 2> /dev/null; done
    sleep 2
    for p in $EXTRA_PIDS; do kill -KILL "$p" 2> /dev/null; done
    EXTRA_PIDS=""
    echo -e "100k\tws\t$server\t$rc\t$json\tshoal-load --scenario loadtest/scenarios/100k.yaml ws://127.0.0.1:$port/ ($what)\t1" >> "$RUN_DIR/index.tsv"
    sleep 5
  done
fi

mkdir -p "$(dirname "$OUT_MD")"
python3 "$ROOT/loadtest/bench_report.py" "$RUN_DIR" > "$OUT_MD.tmp" && mv "$OUT_MD.tmp" "$OUT_MD"
cat "$OUT_MD"
log "written to $OUT_MD (raw results in $RUN_DIR)"
# The README's table is generated, never typed: only from a run of every
# scenario, so that all its rows come from the same run.
if [ -n "$README" ] && [ "$SCENARIOS" = "$ALL_SCENARIOS" ]; then
  python3 "$ROOT/loadtest/bench_report.py" "$RUN_DIR" --summary > "$RUN_DIR/summary.md" &&
    python3 "$ROOT/loadtest/update_readme.py" "$README" "$RUN_DIR/summary.md" &&
    log "performance table in $README rewritten from this run"
fi
