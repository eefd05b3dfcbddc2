#!/usr/bin/env bash
# Every metric the Grafana dashboard (deploy/grafana/shoal.json) and the alert
# rules (deploy/prometheus/shoal.rules.yml) query exists in a running shoald's
# /metrics: a renamed or dropped metric fails here instead of leaving an empty
# panel or an alert that can never fire. Label matchers with a literal value
# (reason=~"limit|fd_exhausted") must match a series too.
#
# Starts the built shoald on loopback (listeners on port 0, the admin port on
# a free port below the ephemeral range, retried on a bind failure), makes one
# TCP echo round trip, scrapes /metrics, extracts the metric names from every
# PromQL expression and compares them with the exposition's series and
# `# TYPE` names. Then SIGTERM, and shoald must exit 0.
#
# Usage: deploy_metrics_test.sh SOURCE_DIR SHOALD_BINARY
set -euo pipefail
src=$1 shoald=$2
tmp=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; [ -f "$tmp/shoald.log" ] && tail -20 "$tmp/shoald.log"; exit 1; }

start_shoald() {
  local admin_port=$1
  cat >"$tmp/shoal.yaml" <<YAML
shards: 2
listeners:
  - {name: echo, protocol: tcp-echo, address: 127.0.0.1, port: 0}
  - {name: ws, protocol: websocket-echo, address: 127.0.0.1, port: 0}
admin: {address: 127.0.0.1, port: $admin_port}
shutdown: {drain_timeout: 2s}
YAML
  "$shoald" --config "$tmp/shoal.yaml" >"$tmp/shoald.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    grep -q "ready:" "$tmp/shoald.log" && return 0
    kill -0 "$pid" 2>/dev/null || { wait "$pid" || true; pid=; return 1; }
    sleep 0.1
  done
  fail "shoald printed no 'ready:' line in 10 s"
}

started=0
for _ in $(seq 10); do
  port=$(shuf -i 20000-32767 -n 1)
  ss -Htln "( sport = :$port )" | grep -q . && continue
  if start_shoald "$port"; then started=1; break; fi
  # Only a lost race for the admin port is worth another try.
  grep -qiE "admin.*(bind|in use)" "$tmp/shoald.log" || fail "shoald exited before 'ready:'"
done
[ $started = 1 ] || fail "shoald did not start in 10 tries"

addr() { # the ADDR:PORT of a log line matching $1
  grep -m1 -E "$1" "$tmp/shoald.log" | sed -E 's/.* listening on ([^ ]+).*/\1/'
}
admin=$(addr '^.*admin listening on ')
echo_addr=$(addr 'listener "echo" \(tcp-echo\) listening on ')
[ -n "$admin" ] && [ -n "$echo_addr" ] || fail "no 'listening on' lines in the log"

# One echo round trip, so the per-listener counters have moved at least once.
reply=$(exec 3<>"/dev/tcp/${echo_addr%:*}/${echo_addr##*:}"; printf 'ping\n' >&3; timeout 5 head -c 5 <&3) || true
[ "$reply" = ping ] || fail "TCP echo on $echo_addr answered '$reply'"

# Python's urllib rather than curl: curl is not among the build packages.
/usr/bin/python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' \
  "http://$admin/metrics" >"$tmp/metrics.txt" || fail "scraping http://$admin/metrics"

/usr/bin/python3 - "$src" "$tmp/metrics.txt" <<'PY' || { kill -TERM "$pid"; wait "$pid" || true; pid=; exit 1; }
import json, pathlib, re, sys
import yaml

src, metrics_path = pathlib.Path(sys.argv[1]), sys.argv[2]

# --- the exposition ---------------------------------------------------------
series = {}      # name -> list of label dicts
typed = set()    # names of '# TYPE' lines (a histogram's base name)
label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
for line in pathlib.Path(metrics_path).read_text().splitlines():
    if line.startswith("# TYPE "):
        typed.add(line.split()[2])
    elif line and not line.startswith("#"):
        m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s', line)
        if m:
            series.setdefault(m.group(1), []).append(dict(label_re.findall(m.group(2) or "")))
if not series:
    sys.exit("FAIL: /metrics holds no series")

# Series Prometheus makes itself for every target: not in any /metrics.
SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
             "scrape_samples_post_metric_relabeling", "scrape_series_added"}
# Labels the scrape adds (target labels) rather than shoald.
TARGET_LABELS = {"instance", "job"}

# --- PromQL: the metric names and their literal label matchers ----------------
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
            "and", "or", "unless", "offset", "atan2", "inf", "nan", "start", "end"}
string_re = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
# a label list after a grouping keyword: by (a, b), on(instance), group_left(x)
grouping_re = re.compile(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)')
ident_re = re.compile(r'(?<![\w.$:])([a-zA-Z_:][a-zA-Z0-9_:]*)')
matcher_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")')

def extract(expr):
    """[(metric, [(label, op, value), ...])] for every vector selector of expr."""
    out = []
    # Selectors with a matcher block, before anything is stripped.
    for m in re.finditer(r'(?<![\w.$:])([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^{}]*)\}', expr):
        name, body = m.group(1), m.group(2)
        matchers = [(l, op, json.loads(v)) for l, op, v in matcher_re.findall(body)]
        if name is None:  # {__name__="x"}
            name = next((v for l, op, v in matchers if l == "__name__" and op == "="), None)
            if name is None:
                raise ValueError(f"selector without a metric name in: {expr}")
        if name in KEYWORDS:
            continue
        out.append((name, [x for x in matchers if x[0] != "__name__"]))
    # Then the bare names: strip strings, matcher blocks, ranges, label lists.
    s = string_re.sub('""', expr)
    s = re.sub(r'(?<![\w.$:])([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{[^{}]*\}', ' ', s)
    s = re.sub(r'\[[^\[\]]*\]', ' ', s)
    s = grouping_re.sub(' ', s)
    for m in ident_re.finditer(s):
        word = m.group(1)
        if word in KEYWORDS:
            continue
        if re.match(r'\s*\(', s[m.end():]):  # a function or aggregation: rate(, sum (
            continue
        if re.fullmatch(r'[0-9]+(ms|s|m|h|d|w|y)', word):
            continue
        out.append((word, []))
    return out

def grafana_queries(dash):
    """(where, PromQL) for every panel target and query variable."""
    def panels(ps):
        for p in ps:
            yield p
            yield from panels(p.get("panels", []))
    for p in panels(dash.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                yield f'dashboard panel "{p.get("title")}" ({t.get("refId")})', t["expr"]
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        # Grafana's own functions: label_values(SELECTOR, label), query_result(PROMQL).
        m = re.fullmatch(r'\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*', q) \
            or re.fullmatch(r'\s*query_result\((.*)\)\s*', q)
        if m:
            q = m.group(1)
        elif re.fullmatch(r'\s*(label_names|metrics)\(.*\)\s*', q):
            continue
        yield f'dashboard variable "{v.get("name")}"', q

def rule_queries(rules):
    for g in rules.get("groups", []):
        for r in g.get("rules", []):
            yield f'rule "{r.get("alert") or r.get("record")}"', r["expr"]

dash = json.loads((src / "deploy/grafana/shoal.json").read_text())
rules = yaml.safe_load((src / "deploy/prometheus/shoal.rules.yml").read_text())
queries = list(grafana_queries(dash)) + list(rule_queries(rules))

problems, names = [], set()
for where, expr in queries:
    try:
        found = extract(expr)
    except ValueError as e:
        problems.append(f"{where}: {e}")
        continue
    if not found:
        problems.append(f"{where}: no metric name found in: {expr}")
    for name, matchers in found:
        names.add(name)
        if name in SYNTHETIC:
            continue
        if name not in series and name not in typed:
            problems.append(f"{where}: metric {name} is not in shoald's /metrics")
            continue
        for label, op, value in matchers:
            if label in TARGET_LABELS or "$" in value:
                continue
            have = series.get(name, [])
            if not any(label in s for s in have):
                problems.append(f"{where}: {name} has no label {label}")
            elif op == "=":
                if not any(s.get(label) == value for s in have):
                    problems.append(f'{where}: no {name} series has {label}="{value}"')
            elif op == "=~":
                # An alternation of plain words: each alternative must match somewhere.
                alts = value.split("|") if re.fullmatch(r'[\w|]+', value) else [value]
                for alt in alts:
                    rx = re.compile(alt)
                    if not any(rx.fullmatch(s.get(label, "")) for s in have):
                        problems.append(f'{where}: no {name} series has {label}=~"{alt}"')

for p in dict.fromkeys(problems):
    print("FAIL:", p)
print(f"{len(queries)} expressions ({sum(1 for w, _ in queries if w.startswith('rule'))} rules), "
      f"{len(names)} metric names: {' '.join(sorted(names))}")
if not problems:
    print("ok: every metric the dashboard and the alert rules query is in shoald's /metrics")
sys.exit(1 if problems else 0)
PY

kill -TERM "$pid"
rc=0; wait "$pid" || rc=$?
pid=
[ $rc = 0 ] || fail "shoald exited $rc after SIGTERM"
echo "ok: shoald exited 0 after SIGTERM"
