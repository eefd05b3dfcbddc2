#!/usr/bin/env bash
# Checks the deployment files with the real tools: systemd-analyze on the
# unit (verify clean, exposure <= 2.0), promtool on the Prometheus files,
# shoald --check on the Kubernetes ConfigMap's config and the invariants of
# the manifests around it, and haproxy -c on the HAProxy config.
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

# Kubernetes: the ConfigMap's shoal.yaml passes `shoald --check`, and the
# Deployment, PodDisruptionBudget and Services agree with it (below).
k8s=$src/deploy/kubernetes/shoal.yaml
/usr/bin/python3 - "$k8s" "$tmp/k8s-shoal.yaml" <<'PY2' || fail=1
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cms = [d for d in docs if d["kind"] == "ConfigMap" and "shoal.yaml" in d.get("data", {})]
if len(cms) != 1:
    sys.exit(f"FAIL: {sys.argv[1]}: want one ConfigMap with shoal.yaml, found {len(cms)}")
open(sys.argv[2], "w").write(cms[0]["data"]["shoal.yaml"])
PY2
if [ -s "$tmp/k8s-shoal.yaml" ]; then
  if "$shoald" --check --config "$tmp/k8s-shoal.yaml" >"$tmp/k8s-check.out" 2>&1; then
    echo "ok: shoald --check accepts the Kubernetes ConfigMap's shoal.yaml"
  else
    echo "FAIL: shoald --check rejects the Kubernetes ConfigMap's shoal.yaml:"; tail -20 "$tmp/k8s-check.out"; fail=1
  fi
  # The effective config, defaults filled in, for the checks below.
  "$shoald" --print-config --config "$tmp/k8s-shoal.yaml" >"$tmp/k8s-effective.yaml" 2>"$tmp/k8s-print.err" \
    || { echo "FAIL: shoald --print-config on the ConfigMap's shoal.yaml"; cat "$tmp/k8s-print.err"; fail=1; }
fi
[ -s "$tmp/k8s-effective.yaml" ] && /usr/bin/python3 - "$k8s" "$tmp/k8s-effective.yaml" <<'PY2' || fail=1
import re, sys, yaml
path, effective = sys.argv[1], yaml.safe_load(open(sys.argv[2]))
docs = [d for d in yaml.safe_load_all(open(path)) if d]
bad = []
def check(ok, what):
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok: bad.append(what)

def seconds(d):  # shoald durations: 250ms, 30s, 5m, 1h, or a bare number of seconds
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", str(d).strip())
    if not m: raise ValueError(f"not a duration: {d!r}")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]

deps = [d for d in docs if d["kind"] == "Deployment"]
if len(deps) != 1: sys.exit(f"FAIL: {path}: want one Deployment, found {len(deps)}")
dep = deps[0]
pod_labels = dep["spec"]["template"]["metadata"]["labels"]
selector = dep["spec"]["selector"]["matchLabels"]
check(all(pod_labels.get(k) == v for k, v in selector.items()), "the Deployment's selector matches its pod labels")
pod = dep["spec"]["template"]["spec"]
ctr = next(c for c in pod["containers"] if c["name"] == "shoal")
ports = {p["name"]: p["containerPort"] for p in ctr.get("ports", [])}

def port_of(probe):
    p = probe["httpGet"]["port"]
    return ports.get(p) if isinstance(p, str) else p

shutdown = effective.get("shutdown") or {}
drain = seconds(shutdown.get("drain_timeout", "30s"))
spread = seconds(shutdown.get("drain_spread", "10s"))  # default 10s where shoald has no such key yet
pre_stop = ctr.get("lifecycle", {}).get("preStop")
check(pre_stop is not None, "the container has a preStop hook")
pre_sleep = 0
if pre_stop:
    cmd = pre_stop.get("exec", {}).get("command", [])
    if cmd and cmd[0].endswith("sleep"): pre_sleep = seconds(cmd[-1])
    elif "sleep" in pre_stop: pre_sleep = pre_stop["sleep"]["seconds"]
grace = pod.get("terminationGracePeriodSeconds", 30)
check(grace > pre_sleep + drain + spread,
      f"terminationGracePeriodSeconds {grace} > preStop {pre_sleep:g}s + drain_timeout {drain:g}s + drain_spread {spread:g}s")

admin_port = (effective.get("admin") or {}).get("port")
check(admin_port not in (None, 0), f"the ConfigMap's config has the admin port on ({admin_port})")
for kind, path_want in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
    probe = ctr.get(kind)
    check(probe is not None and probe.get("httpGet", {}).get("path") == path_want and port_of(probe) == admin_port,
          f"{kind} is GET {path_want} on the admin port {admin_port}")

listener_ports = sorted(l["port"] for l in effective["listeners"])
ctr_ports = sorted(p for n, p in ports.items() if p != admin_port)
check(ctr_ports == listener_ports, f"container ports {ctr_ports} (besides admin) are the listeners' {listener_ports}")

pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
check(len(pdbs) == 1 and all(pod_labels.get(k) == v for k, v in pdbs[0]["spec"]["selector"]["matchLabels"].items())
      and pdbs[0]["spec"]["selector"]["matchLabels"],
      "a PodDisruptionBudget selects the Deployment's pods")
if pdbs:
    spec = pdbs[0]["spec"]
    check(("maxUnavailable" in spec) != ("minAvailable" in spec), "the PodDisruptionBudget sets one of maxUnavailable, minAvailable")

for svc in (d for d in docs if d["kind"] == "Service"):
    sel = svc["spec"].get("selector", {})
    check(sel and all(pod_labels.get(k) == v for k, v in sel.items()), f'Service {svc["metadata"]["name"]} selects the pods')
    for p in svc["spec"]["ports"]:
        t = p.get("targetPort", p["port"])
        check((t in ports) if isinstance(t, str) else (t in ports.values()),
              f'Service {svc["metadata"]["name"]} port {p["name"]} targets a container port')
sys.exit(1 if bad else 0)
PY2

# HAProxy: the shipped config with only its addresses filled in (the
# 10.0.0.x servers to loopback, the bind ports to free ones) is valid.
if command -v haproxy >/dev/null; then
  hp=$src/deploy/haproxy/haproxy.cfg
  grep -q '10\.0\.0\.11' "$hp" && grep -q '10\.0\.0\.12' "$hp" || { echo "FAIL: haproxy.cfg lost the 10.0.0.11/10.0.0.12 placeholders"; fail=1; }
  sed -e 's/10\.0\.0\.11/127.0.0.1/g; s/10\.0\.0\.12/127.0.0.2/g' \
      -e "s/bind :7000/bind 127.0.0.1:$(shuf -i 20000-32767 -n 1)/; s/bind :7001/bind 127.0.0.1:$(shuf -i 20000-32767 -n 1)/" \
      "$hp" >"$tmp/haproxy.cfg"
  for key in "send-proxy-v2" "check port 7070" "option httpchk GET /readyz" "http-check expect status 200" "balance leastconn"; do
    grep -qF -- "$key" "$tmp/haproxy.cfg" || { echo "FAIL: haproxy.cfg lacks '$key'"; fail=1; }
  done
  if sed 's/#.*//' "$tmp/haproxy.cfg" | grep -q "on-marked-down shutdown-sessions"; then echo "FAIL: haproxy.cfg cuts sessions of a draining server"; fail=1; fi
  if haproxy -c -f "$tmp/haproxy.cfg" >"$tmp/haproxy.out" 2>&1; then echo "ok: haproxy -c accepts deploy/haproxy/haproxy.cfg"
  else echo "FAIL: haproxy -c -f deploy/haproxy/haproxy.cfg:"; cat "$tmp/haproxy.out"; fail=1; fi
else
  echo "FAIL: haproxy is not installed (deploy/install-deps.sh installs it)"; fail=1
fi
exit $fail
