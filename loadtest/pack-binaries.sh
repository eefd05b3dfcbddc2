#!/usr/bin/env bash
# loadtest/pack-binaries.sh BUILD_DIR DEST: copy shoald, shoal-load, the
# yardstick and (when built) the Tokio peer into DEST, with every shared
# library they load, the C library and its loader included, into DEST/lib.
# loadtest/shard-scaling.sh runs them through that loader, so they run on a
# machine that has none of shoal's packages and another C library.
set -euo pipefail
BUILD=${1:?usage: pack-binaries.sh BUILD_DIR DEST}
DEST=${2:?usage: pack-binaries.sh BUILD_DIR DEST}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$DEST/lib"
bins=("$BUILD/server/shoald" "$BUILD/loadtest/shoal-load" "$BUILD/loadtest/shoal-baseline")
tokio=$ROOT/loadtest/peers/build/tokio-echo/target/release/tokio-echo
[ -x "$tokio" ] && bins+=("$tokio")
for b in "${bins[@]}"; do
  cp "$b" "$DEST/"
  ldd "$b" | awk '/=> \//{print $3} $1 ~ /ld-linux/{print $1}' | while read -r lib; do
    cp -L "$lib" "$DEST/lib/$(basename "$lib")"
  done
done
{ git -C "$ROOT" rev-parse --short=12 HEAD
  git -C "$ROOT" diff --quiet HEAD || echo "(plus uncommitted changes)"; } | paste -sd' ' > "$DEST/commit"
du -sh "$DEST" >&2
