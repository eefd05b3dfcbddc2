#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets under tests/fuzz/corpus/.

Run it again after changing it; the files it writes are committed, so that
the replay tests and `make fuzz` need no Python. Each seed is a real input:
the shipped configs and variants of them, valid WebSocket frames (masked
text, binary, ping, pong, close, fragmented, compressed), valid and
near-valid upgrade requests, admin requests, and PROXY protocol headers.
"""
import os
import shutil
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- config ------------------------------------------------------------------

def config_seeds():
    for rel in ["config/shoal.yaml", "deploy/docker/shoal.yaml",
                "loadtest/configs/shoald-100k.yaml", "loadtest/configs/shoald-bench.yaml",
                "loadtest/configs/shoald-bench-dispatch.yaml"]:
        with open(os.path.join(ROOT, rel), "rb") as f:
            write("config", rel.replace("/", "_"), f.read())
    seeds = {
        "empty.yaml": "",
        "minimal.yaml": "listeners:\n  - name: e\n    port: 7000\n",
        "flow.yaml": "{shards: 2, sharding: dispatch, listeners: [{name: a, port: 1, protocol: tcp-echo}]}\n",
        "websocket-full.yaml": (
            "listeners:\n"
            "  - name: ws\n    protocol: websocket-echo\n    address: 127.0.0.1\n    port: 7001\n"
            "    max_connections: 10\n    idle_timeout: 0\n"
            "    websocket:\n      path: /chat\n      max_message_bytes: 65536\n"
            "      max_header_bytes: 4096\n      handshake_timeout: 250ms\n"
            "      ping_interval: 1m\n      pong_timeout: 1h\n      write_timeout: 30\n"
            "      allowed_origins: [https://example.com]\n      subprotocols: [chat, superchat]\n"
            "      permessage_deflate: {enabled: true, server_max_window_bits: 9, client_max_window_bits: 12}\n"),
        "limits.yaml": "limits:\n  max_connections: 5\n  reserved_descriptors: 0\n  on_insufficient: fail\n"
                       "shutdown: {drain_timeout: 0s}\nlogging: {level: debug, format: json}\n"
                       "admin: {address: '::1', port: 0}\n",
        "bad-port.yaml": "listeners:\n  - name: e\n    port: 70000\n",
        "unknown-key.yaml": "listener:\n  - name: e\n",
        "bad-duration.yaml": "shutdown:\n  drain_timeout: 5 fortnights\n",
        "duplicate-name.yaml": "listeners:\n  - {name: a, port: 1}\n  - {name: a, port: 2}\n",
        "anchors.yaml": "base: &b {name: x, port: 9}\nlisteners: [*b]\n",
        "tags.yaml": "shards: !!str 4\ncpu_affinity: !!bool yes\n",
        "multidoc.yaml": "shards: 1\n---\nshards: 2\n",
        "syntax-error.yaml": "listeners: [\n  - name: a\n",
    }
    for name, text in seeds.items():
        write("config", name, text)


# --- WebSocket frames ---------------------------------------------------------

MASK = b"\x37\xfa\x21\x3d"


def frame(opcode, payload=b"", fin=True, rsv1=False, mask=MASK):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return head + mask + masked


def deflate_raw(data):
    c = zlib.compressobj(wbits=-10)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]  # RFC 7692 §7.2.1: without the trailing 00 00 ff ff


def close(code=1000, reason=b""):
    return frame(8, struct.pack("!H", code) + reason)


def websocket_seeds():
    plain = {
        "text": frame(1, b"Hello"),
        "binary": frame(2, bytes(range(256))),
        "ping": frame(9, b"are you there"),
        "pong-unsolicited": frame(10, b"x"),
        "close-normal": close(1000, b"bye"),
        "close-empty": frame(8),
        "fragmented-text": frame(1, "h\u00e9".encode()[:2], fin=False) + frame(9, b"p") +
                           frame(0, "h\u00e9".encode()[2:] + b"llo", fin=True),
        "empty-final-fragment": frame(1, b"ab", fin=False) + frame(0, b"", fin=True),
        "utf8-4byte": frame(1, "\U0001F600 ok".encode()),
        "many-small": b"".join(frame(1, b"m%d" % i) for i in range(20)),
        "medium-binary": frame(2, b"\xab" * 1000),
        "at-limit": frame(2, b"L" * 4096),
        "echo-then-close": frame(1, b"one") + frame(2, b"two") + close(1001),
        "zero-mask": frame(1, b"unmasked by a zero key", mask=b"\0\0\0\0"),
        "partial-frame": frame(2, b"x" * 300)[:150],
    }
    for name, data in plain.items():
        write("websocket", "plain-" + name, b"\x00" + data)
    compressed = deflate_raw(b"Hello, compressed world! " * 4)
    deflate = {
        "compressed-text": frame(1, compressed, rsv1=True),
        "uncompressed-text": frame(1, b"plain text on a deflate connection"),
        "compressed-fragmented": frame(2, compressed[:5], fin=False, rsv1=True) +
                                 frame(0, compressed[5:], fin=True),
        "compressed-then-close": frame(1, deflate_raw(b"abc"), rsv1=True) + close(1000),
    }
    for name, data in deflate.items():
        write("websocket", "deflate-" + name, b"\x01" + data)


# --- HTTP upgrade requests ----------------------------------------------------

def upgrade(path="/", extra="", version="13", method="GET", proto="HTTP/1.1",
            key="dGhlIHNhbXBsZSBub25jZQ=="):
    return (f"{method} {path} {proto}\r\nHost: 127.0.0.1:7001\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: {version}\r\n{extra}\r\n")


def http_upgrade_seeds():
    # First byte: 0 plain, 1 deflate, 2 strict (path /chat, origins, subprotocols).
    seeds = {
        "plain-valid": (0, upgrade()),
        "plain-valid-then-frame": (0, upgrade().encode() + frame(1, b"hi")),
        "plain-query": (0, upgrade("/?token=abc")),
        "plain-http2-version": (0, upgrade(proto="HTTP/1.2")),
        "plain-http10": (0, upgrade(proto="HTTP/1.0")),
        "plain-post": (0, upgrade(method="POST")),
        "plain-bad-key": (0, upgrade(key="short")),
        "plain-version-8": (0, upgrade(version="8")),
        "plain-no-upgrade": (0, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        "plain-body": (0, upgrade(extra="Content-Length: 3\r\n") + "abc"),
        "plain-chunked": (0, upgrade(extra="Transfer-Encoding: chunked\r\n") + "0\r\n\r\n"),
        "plain-two-hosts": (0, upgrade(extra="Host: other\r\n")),
        "plain-garbage": (0, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
        "plain-incomplete": (0, upgrade()[:40]),
        "plain-folded-header": (0, upgrade(extra="X-Long: a\r\n b\r\n")),
        "deflate-offer": (1, upgrade(extra="Sec-WebSocket-Extensions: permessage-deflate; "
                                            "client_max_window_bits; server_max_window_bits=10\r\n")),
        "deflate-bad-params": (1, upgrade(extra="Sec-WebSocket-Extensions: permessage-deflate; "
                                                 "server_max_window_bits=99\r\n")),
        "strict-valid": (2, upgrade("/chat", "Origin: https://example.com\r\n"
                                             "Sec-WebSocket-Protocol: chat, chat.v2\r\n")),
        "strict-wrong-origin": (2, upgrade("/chat", "Origin: https://evil.example\r\n")),
        "strict-wrong-path": (2, upgrade("/nope", "Origin: https://example.com\r\n")),
        "strict-large-header": (2, upgrade("/chat", "Origin: https://example.com\r\nX-Pad: " +
                                                    "p" * 1100 + "\r\n")),
    }
    for name, (selector, data) in seeds.items():
        if isinstance(data, str):
            data = data.encode("latin-1")
        write("http_upgrade", name, bytes([selector]) + data)


# --- admin requests -----------------------------------------------------------

def admin_seeds():
    seeds = {
        "get-metrics": "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n",
        "get-healthz": "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        "get-readyz-http10": "GET /readyz HTTP/1.0\r\n\r\n",
        "get-status-query": "GET /status?pretty=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        "head-status": "HEAD /status HTTP/1.1\r\nHost: x\r\n\r\n",
        "pipelined": "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nHEAD /readyz HTTP/1.1\r\nHost: x\r\n\r\n"
                     "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
        "post-body": "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        "chunked": "POST /status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3\r\nabc\r\n0\r\n\r\n",
        "bad-method": "G@T / HTTP/1.1\r\n\r\n",
        "bad-version": "GET / HTTP/9.9\r\n\r\n",
        "incomplete": "GET /metrics HTTP/1.1\r\nHost",
        "large-header": "GET / HTTP/1.1\r\nX-Pad: " + "a" * 9000 + "\r\n\r\n",
        "body-too-large": "POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n",
    }
    for name, text in seeds.items():
        write("admin_http", name, text)


# --- PROXY protocol headers ------------------------------------------------------

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v2(command, family, body):
    return V2_SIG + bytes([command, family]) + struct.pack("!H", len(body)) + body


def tlv(kind, value):
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def proxy_protocol_seeds():
    # First byte: the accepted version in bits 0-1 (0 off, 1 v1, 2 v2, 3 any),
    # the byte limit in bits 2-4 (see kLimits in fuzz_proxy_protocol.cpp).
    v4 = bytes([10, 0, 0, 1, 192, 168, 1, 2]) + struct.pack("!HH", 12345, 8080)
    v6 = bytes(15) + b"\x01" + b"\x20\x01\x0d\xb8" + bytes(11) + b"\x02" + struct.pack("!HH", 1, 65535)
    ssl = tlv(0x20, b"\x01\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"client.example"))
    tlvs = tlv(0xEA, b"\x01vpce-08d2bf15fac5001c9") + tlv(0x01, b"h2") + tlv(0x02, b"example.com") + ssl
    seeds = {
        "v1-tcp4": (3, b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"),
        "v1-tcp4-then-data": (1, b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 7000\r\nhello\n"),
        "v1-tcp6": (3, b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.2 0 65535\r\n"),
        "v1-tcp6-longest": (3, b"PROXY TCP6 " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n"),
        "v1-unknown": (3, b"PROXY UNKNOWN\r\n"),
        "v1-unknown-addresses": (3, b"PROXY UNKNOWN ffff::1 ::1 1 2\r\nGET / HTTP/1.1\r\n\r\n"),
        "v1-two-spaces": (3, b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"),
        "v1-port-65536": (3, b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"),
        "v1-tcp4-v6-text": (3, b"PROXY TCP4 ::1 ::1 1 2\r\n"),
        "v1-no-crlf": (3, b"PROXY UNKNOWN " + b"z" * 100),
        "v1-on-v2-listener": (2, b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
        "v1-small-limit": (3 | 5 << 2, b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"),
        "v2-tcp4": (3, proxy_v2(0x21, 0x11, v4)),
        "v2-tcp4-nlb-with-data": (2, proxy_v2(0x21, 0x11, v4 + tlv(0xEA, b"\x01vpce-1")) + b"first bytes"),
        "v2-tcp6": (3, proxy_v2(0x21, 0x21, v6)),
        "v2-tcp6-tlvs": (2, proxy_v2(0x21, 0x21, v6 + tlvs)),
        "v2-tcp4-tlvs": (3, proxy_v2(0x21, 0x11, v4 + tlvs)),
        "v2-local": (3, proxy_v2(0x20, 0x00, b"")),
        "v2-local-with-block": (3, proxy_v2(0x20, 0x11, v4)),
        "v2-unspec": (3, proxy_v2(0x21, 0x00, b"")),
        "v2-udp4": (3, proxy_v2(0x21, 0x12, v4)),
        "v2-unix": (3, proxy_v2(0x21, 0x31, b"/run/a.sock".ljust(108, b"\x00") + b"/run/b".ljust(108, b"\x00"))),
        "v2-bad-tlv": (3, proxy_v2(0x21, 0x11, v4 + b"\x01\x00\x05ab")),
        "v2-bad-version": (3, proxy_v2(0x11, 0x11, v4)),
        "v2-bad-command": (3, proxy_v2(0x22, 0x11, v4)),
        "v2-bad-family": (3, proxy_v2(0x21, 0x13, v4)),
        "v2-above-limit": (3, proxy_v2(0x21, 0x11, v4 + tlv(0xE0, b"g" * 3000))),
        "v2-at-limit-28": (3 | 4 << 2, proxy_v2(0x21, 0x11, v4)),
        "v2-on-v1-listener": (1, proxy_v2(0x21, 0x11, v4)),
        "tls-client-hello": (3, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32)),
        "http-get": (3, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
        "off": (0, b"PROXY UNKNOWN\r\n"),
    }
    for name, (selector, data) in seeds.items():
        write("proxy_protocol", name, bytes([selector]) + data)


if __name__ == "__main__":
    for t in ["config", "websocket", "http_upgrade", "admin_http", "proxy_protocol"]:
        shutil.rmtree(os.path.join(CORPUS, t), ignore_errors=True)
    config_seeds()
    websocket_seeds()
    http_upgrade_seeds()
    admin_seeds()
    proxy_protocol_seeds()
