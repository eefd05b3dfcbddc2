#!/usr/bin/env python3
"""Turns a bench.sh run directory (index.tsv + shoal-load JSON files) into
markdown tables with ratios to the yardstick. Used by loadtest/bench.sh.

  bench_report.py RUN_DIR            the full page (loadtest/results/latest.md)
  bench_report.py RUN_DIR --summary  the README's performance table"""
import csv
import datetime
import json
import os
import platform
import re
import sys

run_dir = sys.argv[1]
summary_only = "--summary" in sys.argv[2:]
rows = list(csv.DictReader(open(os.path.join(run_dir, "index.tsv")), delimiter="\t"))


def load(row):
    try:
        with open(row["json"]) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def median_of(values):
    """Each number the median of its rounds; anything else (series, text)
    from the first round."""
    first = values[0]
    if isinstance(first, bool) or not all(isinstance(v, type(first)) for v in values):
        return first
    if isinstance(first, (int, float)):
        ordered = sorted(values)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    if isinstance(first, dict):
        return {k: median_of([v[k] for v in values]) if all(k in v for v in values) else first[k]
                for k in first}
    return first


# A scenario that ran in rounds (bench.sh's ROUNDS) is reported as the
# median of each figure over its rounds; its status is that of the worst.
by_case = {}
for row in rows:
    by_case.setdefault((row["scenario"], row["proto"], row["server"]), []).append(row)
results = {}
ROUNDS_SEEN = 1
for key, case_rows in by_case.items():
    loaded = [load(r) for r in case_rows]
    good = [j for j in loaded if j is not None]
    worst = next((r for r in case_rows if r["exit"] != "0"), case_rows[0])
    if not key[0].startswith("tls-"):  # the tls rows say their own rounds
        ROUNDS_SEEN = max(ROUNDS_SEEN, len(case_rows))
    results[key] = (worst, median_of(good) if good else None)

ORDER = ["yardstick", "shoald", "haproxy", "tokio", "beast-async", "beast-fast", "node-ws"]


def servers_for(scenario, proto):
    found = [s for (sc, p, s) in results if sc == scenario and p == proto]
    return sorted(found, key=lambda s: ORDER.index(s) if s in ORDER else 99)


def us(v):
    if v is None:
        return "–"
    if v >= 1e6:
        return f"{v / 1e6:.2f} s"
    if v >= 1e3:
        return f"{v / 1e3:.2f} ms"
    return f"{v:.0f} µs"


def num(v):
    return "–" if v is None else f"{v:,.0f}"


def ratio(v, base, invert=False):
    if v is None or base in (None, 0) or v == 0:
        return "–"
    r = v / base
    return f"{r:.2f}×"


def status(row, j):
    if j is None:
        return f"no result (exit {row['exit']})"
    if row["exit"] != "0":
        errs = {k: v for k, v in j.get("errors", {}).items() if v}
        return f"exit {row['exit']} " + ", ".join(f"{k} {v}" for k, v in errs.items())
    return "ok"


def machine():
    model = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1048576:.0f} GiB"
    except OSError:
        pass
    # bench.sh records the commit when the run starts; the time is when
    # the run's index was last written.
    try:
        commit = open(os.path.join(run_dir, "commit")).read().strip()
    except OSError:
        commit = "?"
    when = datetime.datetime.fromtimestamp(os.path.getmtime(os.path.join(run_dir, "index.tsv")),
                                           datetime.timezone.utc)
    return (f"{os.cpu_count()} CPUs ({model}), {mem} RAM, Linux {platform.release()}; "
            f"commit {commit}; {when:%Y-%m-%d %H:%M} UTC")


PEERS = ("tokio", "beast-async", "beast-fast", "node-ws")
PEER_NAMES = {"tokio": "Tokio", "beast-async": "Beast async example", "beast-fast": "Beast fast example",
              "node-ws": "node ws"}


def get(scen, proto, server, *path):
    j = results.get((scen, proto, server), (None, None))[1]
    for key in path:
        if not isinstance(j, dict) or key not in j:
            return None
        j = j[key]
    return j


def peers_text(scen, proto, path, fmt):
    """Each peer's figure as `fmt(value, yardstick value)`, best first."""
    base = get(scen, proto, "yardstick", *path)
    found = []
    for p in PEERS:
        v = get(scen, proto, p, *path)
        if v is not None:
            found.append((p, v))
    return ", ".join(f"{PEER_NAMES[p]} {fmt(v, base)}" for p, v in found) or "–"


def wall_s(scen, proto, server):
    """Wall time of a connect row: every connection attempted and done."""
    return get(scen, proto, server, "connections", "connect_phase_s")


def tls_summary(lines):
    """The TLS rows of the README's table; no yardstick speaks TLS, so the
    comparison is to ws:// and to HAProxy in the same run."""
    v = get("tls-throughput", "wss", "shoald", "throughput", "msgs_per_s")
    if v is not None:
        ws = get("tls-throughput", "ws", "shoald", "throughput", "msgs_per_s")
        h = get("tls-throughput", "wss", "haproxy", "throughput", "msgs_per_s")
        via = f", HAProxy TLS + shoald ws:// {num(h)} msgs/s ({ratio(h, v)} shoald wss)" if h is not None else ""
        lines.append(f"| WSS echo, 1,000 conns × 16 in flight | {v / 1e3:.0f}K msgs/s | – | "
                     f"shoald ws:// {num(ws)} msgs/s (wss {ratio(v, ws)}){via} |")
    v = get("tls-memory-10k", "tls", "shoald", "server", "bytes_per_connection")
    if v is not None:
        h = get("tls-memory-10k", "tls", "haproxy", "server", "bytes_per_connection")
        lines.append(f"| idle memory per TLS echo connection (10,000 held after one echo) | {num(v)} B | – | "
                     f"HAProxy TLS + plaintext shoald {num(h)} B ({ratio(h, v)}) |")
    v = get("tls-memory-10k", "wss", "shoald", "server", "bytes_per_connection")
    if v is not None:
        lines.append(f"| idle memory per wss connection (10,000 held after one echo) | {num(v)} B | – | – |")
    v = wall_s("tls-connect", "tls", "shoald")
    if v is not None:
        h = wall_s("tls-connect", "tls", "haproxy")
        lines.append(f"| 10,000 TLS handshakes (wall time) | {v:.2f} s | – | "
                     f"HAProxy {'–' if h is None else f'{h:.2f} s'} (shoald {ratio(v, h)} its time) |")


PUBSUB_ROWS = [
    ("pubsub-fanout", "fan-out, 1 publisher → 10,000 subscribers on one channel, one instance"),
    ("pubsub-fanout-redis", "fan-out, 1 publisher → 10,000 subscribers at another instance, through Redis"),
    ("pubsub-channels", "1,000 channels × 10 subscribers, one publisher each, one instance"),
]


def pubsub_cell(j):
    """A pubsub row's figures: deliveries/s and p99 publish → delivery, and
    any delivery that was not right."""
    p = j.get("pubsub") or {}
    rate = p.get("deliveries_per_s", 0)
    bad = {k: p.get(k, 0) for k in ("missing", "duplicated", "reordered", "foreign")}
    bad = ", ".join(f"{v:,} {k}" for k, v in bad.items() if v)
    shown = f"{rate / 1e3:.0f}K deliveries/s" if rate >= 1e3 else f"{rate:.0f} deliveries/s"
    return f"{shown}, p99 {us(j['latency']['p99_us'])}" + (f" ({bad})" if bad else "")


def pubsub_summary(lines):
    for scen, title in PUBSUB_ROWS:
        row, j = results.get((scen, "ws", "shoald"), (None, None))
        if j is None:
            continue
        per = j["pubsub"].get("rate_per_publisher", 0)
        lines.append(f"| pub/sub {title}, {per:g} msgs/s per publisher | {pubsub_cell(j)} | – | – |")


def summary():
    """The README's table: one row per target of the performance issue, all
    from this run."""
    lines = ["| scenario | shoald | × yardstick | peers (× yardstick) |", "|---|---:|---:|---|"]
    ratio_fmt = lambda v, b: ratio(v, b)
    bytes_fmt = lambda v, b: f"{num(v)} B"

    def rate_row(title, scen, proto, path, show):
        v = get(scen, proto, "shoald", *path)
        base = get(scen, proto, "yardstick", *path)
        if v is None:
            return
        lines.append(f"| {title} | {show(v)} | {ratio(v, base)} | {peers_text(scen, proto, path, ratio_fmt)} |")

    msgs = lambda v: f"{v / 1e6:.2f}M msgs/s" if v >= 1e6 else f"{v / 1e3:.0f}K msgs/s"
    rate_row("TCP echo, 1,000 conns × 16 in flight", "throughput", "tcp", ("throughput", "msgs_per_s"), msgs)
    rate_row("TCP server CPU per message at 20,000 msgs/s", "latency", "tcp", ("server", "cpu_ns_per_msg"),
             lambda v: f"{v:,.0f} ns")
    rate_row("WS echo, 1,000 conns × 16 in flight", "throughput", "ws", ("throughput", "msgs_per_s"), msgs)
    rate_row("WS ping-pong, 1,000 conns × 1 in flight", "pingpong", "ws", ("throughput", "msgs_per_s"), msgs)
    rate_row("WS p99 at 20,000 msgs/s", "latency", "ws", ("latency", "p99_us"), us)
    for proto, name in (("tcp", "TCP"), ("ws", "WS")):
        v = get("memory-10k", proto, "shoald", "server", "anon_bytes_per_connection")
        if v is not None:
            base = get("memory-10k", proto, "yardstick", "server", "anon_bytes_per_connection")
            lines.append(f"| private memory per idle {name} connection (10,000 held) | {num(v)} B | {ratio(v, base)} | "
                         f"{peers_text('memory-10k', proto, ('server', 'anon_bytes_per_connection'), bytes_fmt)} |")
    v = get("memory-load", "ws", "shoald", "server", "under_load", "anon_bytes_per_connection_median")
    if v is not None:
        base = get("memory-load", "ws", "yardstick", "server", "under_load", "anon_bytes_per_connection_median")
        lines.append(f"| private memory per WS connection under 1,000 × 16 | {num(v)} B | {ratio(v, base)} | "
                     f"{peers_text('memory-load', 'ws', ('server', 'under_load', 'anon_bytes_per_connection_median'), bytes_fmt)} |")
    v = get("connect", "ws", "shoald", "connections", "established_per_s")
    if v is not None:
        base = get("connect", "ws", "yardstick", "connections", "established_per_s")
        wall = ratio(base, v)  # wall time for the same 10,000 is the inverse rate
        lines.append(f"| 10,000 WS connects + upgrades (wall time) | {num(v)}/s | {wall} | "
                     f"{peers_text('connect', 'ws', ('connections', 'established_per_s'), lambda pv, b: ratio(b, pv))} |")
    tls_summary(lines)
    pubsub_summary(lines)
    j = results.get(("100k", "ws", "shoald"), (None, None))[1]
    if j:
        errs = sum(v for v in j["errors"].values() if v)
        p99 = j["latency"]["p99_us"]
        base = get("100k", "ws", "yardstick", "latency", "p99_us")
        others = []
        if base is not None:
            others.append(f"yardstick p99 {us(base)}")
        off = get("100k", "ws", "shoald-nokeepalive", "latency", "p99_us")
        if off is not None:
            others.append(f"shoald with keepalive pings off: p99 {us(off)} ({ratio(off, base)})")
        lines.append(f"| {j['config']['connections']:,} WS connections, six processes on one port, p99 | "
                     f"{j['connections']['established']:,} held {j['measured_s']:.0f} s, {errs} errors, "
                     f"{j['config']['active']:,} echoing: p99 {us(p99)} | {ratio(p99, base)} | "
                     f"{', '.join(others) or '–'} |")
    lines.append("")
    lines.append(f"Machine: {machine()}.")
    return "\n".join(lines)


if summary_only:
    print(summary())
    sys.exit(0)

out = []
w = out.append
w("# shoal benchmarks: shoald beside the yardstick and the peers")
w("")
w(f"Machine: {machine()}.")
w("")
w("One `loadtest/bench.sh` run. Every server runs with 2 threads (shoald: `shards: 2`, "
  "`loadtest/configs/shoald-bench.yaml`), is started fresh for each row and stopped after it; the "
  "client is `shoal-load` on the same 2 cores (so client and server share the CPUs: compare "
  "within a table, never across runs or machines). Ratios are to the yardstick (`shoal-baseline`, "
  "epoll in C) in the same run: above 1× is more throughput (or more bytes, or more time) than it.")
w("")

SCEN = [
    ("throughput", "Throughput: 1,000 connections × 16 messages of 64 B in flight (closed loop)"),
    ("pingpong", "Ping-pong: 1,000 connections × 1 message of 64 B in flight"),
    ("latency", "Latency at a fixed rate: 20,000 msgs/s over 1,000 connections (open loop, from intended send time)"),
]
for proto, pname in (("tcp", "TCP echo"), ("ws", "WebSocket echo")):
    w(f"## {pname}")
    w("")
    for scen, title in SCEN:
        servers = servers_for(scen, proto)
        if not servers:
            continue
        w(f"**{title}**")
        w("")
        w("| server | msgs/s | × yardstick | p50 | p99 | p99.9 | max | server CPU ns/msg | × yardstick | client CPU s | status |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        base = results.get((scen, proto, "yardstick"), (None, None))[1]
        base_rate = base["throughput"]["msgs_per_s"] if base else None
        base_cpu = base.get("server", {}).get("cpu_ns_per_msg") if base else None
        for s in servers:
            row, j = results[(scen, proto, s)]
            if j is None:
                w(f"| {s} | – | – | – | – | – | – | – | – | – | {status(row, j)} |")
                continue
            lat = j["latency"]
            rate = j["throughput"]["msgs_per_s"]
            cpu = j.get("server", {}).get("cpu_ns_per_msg")
            w(f"| {s} | {num(rate)} | {ratio(rate, base_rate)} | {us(lat['p50_us'])} | {us(lat['p99_us'])} | "
              f"{us(lat['p99_9_us'])} | {us(lat['max_us'])} | {num(cpu)} | {ratio(cpu, base_cpu)} | "
              f"{j['client']['cpu_s']:.1f} | {status(row, j)} |")
        w("")

w("## Memory per connection")
w("")
w("Private memory: the server's RssAnon (`/proc/PID/status`, summed over its processes) with the connections "
  "open, minus before connecting, divided by the connections: heap and stacks, what each connection costs. "
  "VmRSS also counts the pages of code and libraries the first connections fault in (about 2.6 MiB for shoald, "
  "once, shared with every process mapping the same files), which at 1,000 connections would read as 2.6 KB "
  "each; it is shown beside. Kernel: the host's slab (`/proc/meminfo` Slab) and TCP buffer pages "
  "(`/proc/net/sockstat` mem) over the same interval, divided by the connections: client and server are on "
  "this host, so each figure holds both ends of a connection (two sockets). Host per idle connection: the "
  "server's private bytes plus half the slab figure (one socket).")
w("")
w("| protocol | connections | server | private B/conn | × yardstick | VmRSS B/conn | kernel slab B/conn (2 sockets) | host B/conn (server side) | status |")
w("|---|---:|---|---:|---:|---:|---:|---:|---|")
def anon_of(j):
    return j["server"].get("anon_bytes_per_connection") if j and "server" in j else None
def slab_of(j):
    return (j["server"].get("kernel") or {}).get("slab_bytes_per_connection") if j and "server" in j else None
for proto in ("tcp", "ws"):
    for scen, n in (("memory-10k", "10,000"), ("memory-19k", "19,000")):
        base = results.get((scen, proto, "yardstick"), (None, None))[1]
        base_a = anon_of(base)
        for s in servers_for(scen, proto):
            row, j = results[(scen, proto, s)]
            if j is None or "server" not in j:
                w(f"| {proto} | {n} | {s} | – | – | – | – | – | {status(row, j)} |")
                continue
            a, slab = anon_of(j), slab_of(j)
            host = a + slab / 2 if a is not None and slab is not None else None
            w(f"| {proto} | {n} | {s} | {num(a)} | {ratio(a, base_a)} | {num(j['server']['bytes_per_connection'])} | "
              f"{num(slab)} | {num(host)} | {status(row, j)} |")
w("")
w("**Under load: 1,000 connections × 16 messages of 64 B in flight, 5 s, then held idle 1 s.** Private bytes "
  "per connection during the measured seconds (median) and 1 s after the load stopped; the kernel's TCP "
  "buffer memory and slab during the load (median, both ends).")
w("")
w("| protocol | server | private B/conn under load | × yardstick | private B/conn 1 s after | TCP buffers B/conn under load | slab B/conn under load | status |")
w("|---|---|---:|---:|---:|---:|---:|---|")
for proto in ("tcp", "ws"):
    base = results.get(("memory-load", proto, "yardstick"), (None, None))[1]
    base_u = ((base or {}).get("server") or {}).get("under_load", {}).get("anon_bytes_per_connection_median")
    for s in servers_for("memory-load", proto):
        row, j = results[("memory-load", proto, s)]
        if j is None or "server" not in j:
            w(f"| {proto} | {s} | – | – | – | – | – | {status(row, j)} |")
            continue
        u = j["server"].get("under_load", {})
        a = u.get("anon_bytes_per_connection_median")
        w(f"| {proto} | {s} | {num(a)} | {ratio(a, base_u)} | {num(anon_of(j))} | "
          f"{num(u.get('tcp_mem_bytes_per_connection_median'))} | {num(u.get('slab_bytes_per_connection_median'))} | {status(row, j)} |")
w("")

w("## Connect (10,000 connections as fast as the client allows; WebSocket includes the upgrade)")
w("")
w("| protocol | server | established/s | × yardstick | connect p50 | connect p99 | upgrade p50 | upgrade p99 | status |")
w("|---|---|---:|---:|---:|---:|---:|---:|---|")
for proto in ("tcp", "ws"):
    base = results.get(("connect", proto, "yardstick"), (None, None))[1]
    base_r = base["connections"]["established_per_s"] if base else None
    for s in servers_for("connect", proto):
        row, j = results[("connect", proto, s)]
        if j is None:
            w(f"| {proto} | {s} | – | – | – | – | – | – | {status(row, j)} |")
            continue
        r = j["connections"]["established_per_s"]
        c, h = j["connect_latency"], j["handshake_latency"]
        hp50 = us(h["p50_us"]) if proto == "ws" else "–"
        hp99 = us(h["p99_us"]) if proto == "ws" else "–"
        w(f"| {proto} | {s} | {num(r)} | {ratio(r, base_r)} | {us(c['p50_us'])} | {us(c['p99_us'])} | {hp50} | {hp99} | {status(row, j)} |")
w("")

bal = [(k, v) for k, v in results.items() if k[0] == "balance"]
if bal:
    w("## Balance: shoald's sharding policies (2 shards, TCP throughput run)")
    w("")
    w("| policy | msgs/s | connections per shard (share) |")
    w("|---|---:|---|")
    for (scen, proto, policy), (row, j) in sorted(bal):
        log = os.path.join(run_dir, f"balance.{policy}.server.log")
        served = {}
        try:
            for m in re.finditer(r"shard (\d+): served (\d+) connections", open(log).read()):
                served[int(m.group(1))] = int(m.group(2))
        except OSError:
            pass
        total = sum(served.values()) or 1
        shares = ", ".join(f"shard {k}: {v:,} ({100 * v / total:.1f} %)" for k, v in sorted(served.items())) or "–"
        rate = num(j["throughput"]["msgs_per_s"]) if j else "–"
        w(f"| {policy} | {rate} | {shares} |")
    w("")
    w("Messages per shard are not printed by shoald at exit; the admin port's `/status` has per-shard figures.")
    w("")

TLS_SERVER_NAMES = {"shoald": "shoald (TLS itself)", "haproxy": "HAProxy (TLS) → shoald (plaintext)"}


def tls_tables():
    if not any(k[0].startswith("tls-") for k in results):
        return
    try:
        hv = open(os.path.join(run_dir, "haproxy-version")).read().strip()
    except OSError:
        hv = "HAProxy"
    w("## TLS: shoald's own TLS, and HAProxy terminating TLS in front of plaintext shoald")
    w("")
    w(f"A self-signed EC P-256 certificate made for the run; the client verifies it (`--ca`) and does a full "
      f"handshake per connection (no resumption). HAProxy: {hv}, two processes of one thread each on one port "
      "(`loadtest/configs/haproxy-bench-tls.cfg`: one process would need two descriptors per connection, "
      "over this host's 20,000), in front of shoald's plaintext TCP echo (tls:// rows) or ws:// (wss:// row).")
    w("")
    w("**Idle memory**: server RSS with the connections held idle after the TLS handshake (and the WebSocket "
      "upgrade) and one echo each, minus RSS before connecting, divided by the connections; HAProxy's row sums "
      "both HAProxy processes and shoald.")
    w("")
    w("| protocol | connections | server | bytes per connection | × shoald TLS | of which HAProxy / shoald | "
      "RSS before → held | errors | status |")
    w("|---|---:|---|---:|---:|---|---|---|---|")
    for scen, proto, n in (("tls-memory-10k", "tls", "10,000"), ("tls-memory-10k", "wss", "10,000"),
                           ("tls-memory-19k", "wss", "19,000")):
        base = get(scen, proto, "shoald", "server", "bytes_per_connection")
        for s in servers_for(scen, proto):
            row, j = results[(scen, proto, s)]
            name = TLS_SERVER_NAMES.get(s, s)
            if j is None or "server" not in j:
                w(f"| {proto} | {n} | {name} | – | – | – | – | – | {status(row, j)} |")
                continue
            srv = j["server"]
            b = srv["bytes_per_connection"]
            conns = max(j["connections"]["established"], 1)
            split = "–"
            procs = srv.get("processes", [])
            if s == "haproxy" and len(procs) >= 2 and all("rss_held_bytes" in p for p in procs):
                deltas = [p["rss_held_bytes"] - p["rss_before_bytes"] for p in procs]
                split = f"{num(sum(deltas[:-1]) / conns)} B / {num(deltas[-1] / conns)} B"
            errs = ", ".join(f"{k} {v}" for k, v in j["errors"].items() if v) or "0"
            w(f"| {proto} | {n} | {name} | {num(b)} | {ratio(b, base) if s != 'shoald' else '–'} | {split} | "
              f"{srv['rss_before_bytes'] / 1048576:.1f} → {srv['rss_held_bytes'] / 1048576:.1f} MiB | {errs} | "
              f"{status(row, j)} ({j['connections']['established']:,} held) |")
    w("")
    if servers_for("tls-throughput", "wss"):
        w("**wss:// echo beside ws://**: 1,000 connections × 16 messages of 64 B in flight (closed loop), "
          "shoald's wss:// and ws:// listeners in the same config, and HAProxy terminating TLS in front of "
          "shoald's ws://, taking turns"
          + (f" for {len(by_case.get(('tls-throughput', 'wss', 'shoald'), []))} rounds (medians)" if by_case.get(('tls-throughput', 'wss', 'shoald')) else "") + ".")
        w("")
        w("| protocol | server | msgs/s | × ws:// | p50 | p99 | p99.9 | server CPU ns/msg | × ws:// | client CPU s | status |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        base_rate = get("tls-throughput", "ws", "shoald", "throughput", "msgs_per_s")
        base_cpu = get("tls-throughput", "ws", "shoald", "server", "cpu_ns_per_msg")
        for proto, server in (("ws", "shoald"), ("wss", "shoald"), ("wss", "haproxy")):
            if ("tls-throughput", proto, server) not in results:
                continue
            row, j = results[("tls-throughput", proto, server)]
            name = TLS_SERVER_NAMES.get(server, server) if proto == "wss" else "shoald"
            if j is None:
                w(f"| {proto}:// | {name} | – | – | – | – | – | – | – | – | {status(row, j)} |")
                continue
            lat = j["latency"]
            rate = j["throughput"]["msgs_per_s"]
            cpu = j.get("server", {}).get("cpu_ns_per_msg")
            w(f"| {proto}:// | {name} | {num(rate)} | {ratio(rate, base_rate)} | {us(lat['p50_us'])} | {us(lat['p99_us'])} | "
              f"{us(lat['p99_9_us'])} | {num(cpu)} | {ratio(cpu, base_cpu)} | {j['client']['cpu_s']:.1f} | "
              f"{status(row, j)} |")
        w("")
    if servers_for("tls-connect", "tls"):
        w("**TLS handshakes**: 10,000 TLS echo connections as fast as the client allows (512 connects in "
          "progress per client thread), each a full handshake; wall time from the first connect until every "
          "connection is up. Client and server share the two cores: the client's handshake work is in both rows.")
        w("")
        w("| server | wall time | × shoald | established/s | connect p50 | connect p99 | TLS p50 | TLS p99 | "
          "client CPU s | status |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        base = wall_s("tls-connect", "tls", "shoald")
        for s in servers_for("tls-connect", "tls"):
            row, j = results[("tls-connect", "tls", s)]
            name = TLS_SERVER_NAMES.get(s, s)
            if j is None:
                w(f"| {name} | – | – | – | – | – | – | – | – | {status(row, j)} |")
                continue
            t = j["connections"]["connect_phase_s"]
            c, h = j["connect_latency"], j["tls_handshake_latency"]
            w(f"| {name} | {t:.2f} s | {ratio(t, base)} | {num(j['connections']['established_per_s'])} | "
              f"{us(c['p50_us'])} | {us(c['p99_us'])} | {us(h['p50_us'])} | {us(h['p99_us'])} | "
              f"{j['client']['cpu_s']:.1f} | {status(row, j)} |")
        w("")
        w("Connect times include the TLS handshake; TLS is the handshake alone, after TCP connect.")
        w("")


tls_tables()


def pubsub_table():
    found = [(scen, title) for scen, title in PUBSUB_ROWS if (scen, "ws", "shoald") in results]
    if not found:
        return
    try:
        rv = open(os.path.join(run_dir, "redis-version")).read().strip().split(" v=")[1].split()[0]
        rv = f"Redis {rv}"
    except (OSError, IndexError):
        rv = "Redis"
    w("## Pub/sub: shoald's websocket-pubsub listener")
    w("")
    w("`shoal-load --mode pubsub`: every publisher sends its messages at a fixed rate (from the intended send "
      "time); every subscriber checks that it gets each message of its channel's publishers exactly once, in order, "
      "byte for byte. Latency is publish → delivery (same host, one clock), for messages sent in the measured "
      "window; deliveries/s are those received in it. shoald: `loadtest/configs/shoald-bench-pubsub.yaml` (2 "
      f"shards); the Redis row runs two of them joined by {rv} on loopback, subscribers at one and the publisher at "
      "the other, and its server CPU includes both and Redis. The client is one process of two threads.")
    w("")
    w("| row | connections | deliveries/s | published/s | expected | delivered | missing | dup | reordered | "
      "p50 | p99 | p99.9 | max | server CPU ns/delivery | client CPU s | status |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for scen, title in found:
        row, j = results[(scen, "ws", "shoald")]
        if j is None:
            w(f"| {title} | – | – | – | – | – | – | – | – | – | – | – | – | – | – | {status(row, j)} |")
            continue
        p, lat = j["pubsub"], j["latency"]
        conns = f"{j['connections']['established']:,}/{j['connections']['requested']:,}"
        cpu = j.get("server", {}).get("cpu_ns_per_msg")
        w(f"| {title} | {conns} | {num(p['deliveries_per_s'])} | {num(p['published_per_s'])} | {p['expected']:,} | "
          f"{p['delivered']:,} | {p['missing']:,} | {p['duplicated']:,} | {p['reordered']:,} | {us(lat['p50_us'])} | "
          f"{us(lat['p99_us'])} | {us(lat['p99_9_us'])} | {us(lat['max_us'])} | {num(cpu)} | "
          f"{j['client']['cpu_s']:.1f} | {status(row, j)} |")
    w("")


pubsub_table()

HUNDRED_K = [("shoald", "shoald (keepalive pings after 30 s of silence, the default)"),
             ("yardstick", "yardstick (no pings)"),
             ("shoald-nokeepalive", "shoald, pings off")]
if any(("100k", "ws", name) in results for name, _ in HUNDRED_K):
    w("## 100K: six server processes sharing one port (SO_REUSEPORT), WebSocket")
    w("")
    w("| server | connections | established | held | echoing | msgs/s | p50 | p99 | p99.9 | total server RSS | "
      "bytes/conn | server CPU in the window | errors | status |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for name, label in HUNDRED_K:
        if ("100k", "ws", name) not in results:
            continue
        row, j = results[("100k", "ws", name)]
        if not j:
            w(f"| {label} | no result (exit {row['exit']}) |")
            continue
        srv = j.get("server", {})
        errs = ", ".join(f"{k} {v}" for k, v in j["errors"].items() if v) or "none"
        cpu = srv.get("cpu_window_s")
        w(f"| {label} | {j['config']['connections']:,} | {j['connections']['established']:,} | {j['measured_s']:.0f} s | "
          f"{j['config']['active']:,} | {num(j['throughput']['msgs_per_s'])} | {us(j['latency']['p50_us'])} | "
          f"{us(j['latency']['p99_us'])} | {us(j['latency']['p99_9_us'])} | "
          f"{srv.get('rss_held_bytes', 0) / 1048576:.0f} MiB | {num(srv.get('bytes_per_connection'))} | "
          f"{'–' if cpu is None else f'{cpu:.1f} s'} | {errs} | {status(row, j)} |")
    w("")

w("## Commands")
w("")
w("```")
w("loadtest/peers/build-peers.sh   # Beast examples, Tokio echo (offline, Debian crates), node ws")
w("loadtest/bench.sh               # this page")
w("```")
w("")
if ROUNDS_SEEN > 1:
    w(f"Throughput, ping-pong and latency ran {ROUNDS_SEEN} rounds, the servers taking turns within each "
      "round; every figure of those tables is the median of its rounds (each column on its own).")
    w("")
w("Each row ran (URL = the server's fresh port; `--server-pid` and `--json` added by the script):")
w("")
w("```")
seen = set()
for row in rows:
    key = (row["scenario"], row["proto"], row["command"], row["server"] == "haproxy")
    if key in seen:
        continue
    seen.add(key)
    url = row['proto'] + '://127.0.0.1:PORT' + ('/' if row['proto'] in ('ws', 'wss') else '')
    cmd = row['command'].replace(' URL ', f' {url} ').replace(run_dir, "$RUN_DIR")
    if row['server'] == 'haproxy':
        cmd += "   (PORT: HAProxy's)"
    w(f"{row['scenario']:<11} {row['proto']:<3} {cmd}")
w("```")
print("\n".join(out))
