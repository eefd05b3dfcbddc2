#!/usr/bin/env bash
# Builds the benchmark peers from Debian packages only (nothing is fetched
# but Debian packages through apt):
#   beast-async  Boost.Beast's websocket_server_async example (libboost1.81-doc)
#   beast-fast   Boost.Beast's websocket_server_fast example (its async port)
#   tokio-echo   our small Tokio TCP echo, built OFFLINE by Debian's cargo from
#                Debian's packaged crates (librust-tokio-dev) in
#                /usr/share/cargo/registry
#   node-ws      a WebSocket echo on Debian's node-ws (a script; nothing to build)
# Not run by `make test`. Usage:
#   loadtest/peers/build-peers.sh [BUILD_DIR]      (default loadtest/peers/build)
# Writes BUILD_DIR/peers.env naming what was built; bench.sh reads it.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=$(mkdir -p "${1:-$HERE/build}" && cd "${1:-$HERE/build}" && pwd)
ENV_FILE="$OUT/peers.env"
: > "$ENV_FILE"
BOOST_EX=/usr/share/doc/libboost1.81-doc/examples/libs/beast/example/websocket/server

need_pkgs=()
for p in libboost1.81-doc libboost-context1.81-dev libboost-coroutine1.81-dev librust-tokio-dev cargo rustc nodejs node-ws; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$p")
done
if ((${#need_pkgs[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "build-peers: apt-get install ${need_pkgs[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}" ||
      { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need_pkgs[@]}"; } ||
      echo "build-peers: apt-get failed; building what the installed packages allow"
  else
    echo "build-peers: missing Debian packages (run as root to install): ${need_pkgs[*]}"
  fi
fi

ok() { echo "build-peers: built $1"; echo "$1=$2" >> "$ENV_FILE"; }
skip() { echo "build-peers: SKIPPED $1: $2" >&2; echo "# $1 not built: $2" >> "$ENV_FILE"; }

# --- Boost.Beast examples: copied as they ship, built with g++ -O2 ----------
build_beast() {  # name, example dir, source, extra libs
  local name=$1 src="$BOOST_EX/$2/$3"
  if [ ! -f "$src" ] && [ -f "$src.gz" ]; then src="$src.gz"; fi
  [ -f "$src" ] || { skip "$name" "$BOOST_EX/$2/$3 not found (apt-get install libboost1.81-doc)"; return; }
  mkdir -p "$OUT/$name"
  case "$src" in
    *.gz) gunzip -c "$src" > "$OUT/$name/$3" ;;
    *) cp "$src" "$OUT/$name/$3" ;;
  esac
  if g++ -std=c++17 -O2 -DNDEBUG -pthread -o "$OUT/$name/$name" "$OUT/$name/$3" $4 2> "$OUT/$name/build.log"; then
    ok "$name" "$OUT/$name/$name"
  else
    skip "$name" "g++ failed, see $OUT/$name/build.log"
  fi
}
build_beast beast-async async websocket_server_async.cpp ""
build_beast beast-fast fast websocket_server_fast.cpp "-lboost_coroutine -lboost_context"

# --- Tokio echo: cargo offline against Debian's crate registry --------------
build_tokio() {
  local cargo=/usr/bin/cargo rustc=/usr/bin/rustc
  [ -x "$cargo" ] && [ -x "$rustc" ] || { skip tokio-echo "Debian's cargo/rustc not installed"; return; }
  [ -d /usr/share/cargo/registry ] && ls -d /usr/share/cargo/registry/tokio-1.* > /dev/null 2>&1 ||
    { skip tokio-echo "no tokio in /usr/share/cargo/registry (apt-get install librust-tokio-dev)"; return; }
  local dir="$OUT/tokio-echo"
  mkdir -p "$dir/.cargo" && cp -r "$HERE/tokio-echo/Cargo.toml" "$HERE/tokio-echo/src" "$dir/"
  # Debian's packaged crates are a cargo "directory source": point crates.io
  # at it and forbid the network.
  cat > "$dir/.cargo/config.toml" <<'TOML'
[source.crates-io]
replace-with = "debian"

[source.debian]
directory = "/usr/share/cargo/registry"

[net]
offline = true
TOML
  if (cd "$dir" && CARGO_HOME="$dir/.cargo" RUSTC="$rustc" "$cargo" build --release --offline) > "$dir/build.log" 2>&1; then
    ok tokio-echo "$dir/target/release/tokio-echo"
  else
    skip tokio-echo "cargo failed, see $dir/build.log"
  fi
}
build_tokio

# --- Node ws echo ------------------------------------------------------------
if command -v node > /dev/null && [ -d /usr/share/nodejs/ws ]; then
  mkdir -p "$OUT/node-ws" && cp "$HERE/node-ws-echo/echo.js" "$OUT/node-ws/echo.js"
  ok node-ws "$OUT/node-ws/echo.js"
else
  skip node-ws "node or /usr/share/nodejs/ws missing (apt-get install nodejs node-ws)"
fi

echo "build-peers: wrote $ENV_FILE"
cat "$ENV_FILE"
