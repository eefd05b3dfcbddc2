#!/usr/bin/env bash
# loadtest/sysctl-memory.sh: what deploy/sysctl/90-shoal.conf changes about
# memory per connection. Runs bench.sh's memory scenario (idle TCP and WS at
# 10,000 and 19,000, 1,000 x 16 under load) against shoald with this host's
# current kernel settings, then with the file's values (sysctl -w, root),
# and always restores the values it found (trap). Prints both tables' paths.
#
#   loadtest/sysctl-memory.sh            # about 2 minutes
# Environment: BUILD_DIR, SERVERS (default "yardstick shoald"), as bench.sh.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FILE=$ROOT/deploy/sysctl/90-shoal.conf
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/shoal-sysctl.XXXXXX")}
[ "$(id -u)" = 0 ] || { echo "sysctl-memory.sh: needs root (sysctl -w)" >&2; exit 1; }

mapfile -t KEYS < <(grep -E '^[a-z]' "$FILE" | cut -d= -f1 | tr -d ' ')
declare -A SAVED
for k in "${KEYS[@]}"; do SAVED[$k]=$(sysctl -n "$k"); done
restore() {
  for k in "${KEYS[@]}"; do sysctl -q -w "$k=${SAVED[$k]}" > /dev/null; done
}
trap restore EXIT

run() {  # label
  { echo "# kernel settings: $1"; for k in "${KEYS[@]}"; do echo "#   $k = $(sysctl -n "$k" | tr '\t' ' ')"; done; } > "$OUT/$1.settings"
  SCENARIOS=memory SERVERS=${SERVERS:-yardstick shoald} README= OUT_MD="$OUT/$1.md" \
    timeout 900 "$ROOT/loadtest/bench.sh" > "$OUT/$1.log" 2>&1
}
run host
while IFS= read -r line; do
  [[ "$line" =~ ^[a-z] ]] || continue
  k=$(echo "${line%%=*}" | tr -d ' ')
  v=$(echo "${line#*=}" | sed 's/^ *//')
  sysctl -q -w "$k=$v" > /dev/null
done < "$FILE"
run shoal-conf
restore
trap - EXIT
for l in host shoal-conf; do
  echo "== $l"; cat "$OUT/$l.settings"
  sed -n '/^| protocol | connections/,/^## Connect/p' "$OUT/$l.md" | grep -v '^## Connect'
done
