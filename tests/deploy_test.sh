#!/usr/bin/env bash
# Checks the deployment files with the real tools: systemd-analyze on the
# unit (verify clean, exposure <= 2.0) and promtool on the Prometheus files.
# Usage: deploy_test.sh SOURCE_DIR SHOALD_BINARY
set -euo pipefail
src=$1 shoald=$2
fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# verify resolves ExecStart: point it at the built binary.
sed "s|/usr/bin/shoald|$shoald|g" "$src/systemd/shoal.service" >"$tmp/shoal.service"
out=$(systemd-analyze verify "$tmp/shoal.service" 2>&1) || true
if [ -n "$out" ]; then echo "FAIL: systemd-analyze verify printed:"; echo "$out"; fail=1; else echo "ok: systemd-analyze verify is clean"; fi

line=$(systemd-analyze security --offline=true "$src/systemd/shoal.service" 2>&1 | grep 'Overall exposure level')
score=$(echo "$line" | sed -E 's/.*: ([0-9.]+).*/\1/')
if awk -v s="$score" 'BEGIN{exit !(s <= 2.0)}'; then echo "ok: exposure $score <= 2.0"; else echo "FAIL: $line"; fail=1; fi
grep -q "exposure at $score" "$src/systemd/shoal.service" || { echo "FAIL: the unit's comment does not state the exposure $score"; fail=1; }

for key in "Type=notify" "WatchdogSec=" "LimitNOFILE=1048576" "Restart=on-failure" "ExecReload=/bin/kill -HUP \$MAINPID" "DynamicUser=yes"; do
  grep -qF "$key" "$src/systemd/shoal.service" || { echo "FAIL: unit lacks $key"; fail=1; }
done

promtool check config "$src/deploy/prometheus/prometheus.yml" >"$tmp/p.out" 2>&1 || { cat "$tmp/p.out"; fail=1; }
promtool check rules "$src/deploy/prometheus/shoal.rules.yml" >"$tmp/r.out" 2>&1 || { cat "$tmp/r.out"; fail=1; }
[ $fail = 0 ] && echo "ok: promtool accepts the Prometheus config and rules"

# Every YAML file under deploy/ parses (Kubernetes files hold several documents).
/usr/bin/python3 - "$src/deploy" <<'PY' || fail=1
import pathlib, sys, yaml
bad = 0
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.y*ml")):
    try:
        list(yaml.safe_load_all(path.read_text()))
    except yaml.YAMLError as e:
        print(f"FAIL: {path}: {e}")
        bad = 1
print("ok: every YAML file under deploy/ parses" if not bad else "")
sys.exit(bad)
PY

# The container's config is a valid shoald config.
"$shoald" --print-config --config "$src/deploy/docker/shoal.yaml" >/dev/null || { echo "FAIL: deploy/docker/shoal.yaml"; fail=1; }
exit $fail
