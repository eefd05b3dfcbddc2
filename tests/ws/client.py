#!/usr/bin/python3
"""An independent WebSocket client for shoald's tests: Debian's python3-websockets.

Run by tests/websocket_test.cpp with /usr/bin/python3 (Debian's interpreter,
which sees the python3-websockets package). Echoes text and binary messages at
the RFC 6455 length boundaries, a fragmented message, a ping with a payload,
then closes with a code and a reason. Prints one "ok ..." line per check and
"ALL OK" at the end; exits 1 with a "FAIL ..." line on the first mismatch.
A wss:// URL is verified against --cafile (tests/tls_test.cpp's throwaway
certificate), host name included.

usage: client.py URL [--deflate] [--subprotocol NAME]... [--expect-subprotocol NAME|none]
                 [--cafile PEM]
"""

import argparse
import asyncio
import os
import ssl
import sys

import websockets

LENGTHS = [0, 125, 126, 127, 65535, 65536, 1 << 20]
STEP_TIMEOUT = 20.0


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)
    print("ok", what, flush=True)


def text_payload(n, seed):
    # Valid UTF-8 of exactly n bytes, with multi-byte characters in it.
    unit = "échø-%d " % seed
    s = (unit * (n // len(unit.encode()) + 1)).encode()[:n]
    # Cutting may split a multi-byte character: pad with ASCII instead.
    while True:
        try:
            return s.decode()
        except UnicodeDecodeError:
            s = s[:-1]
            s += b"x"


async def step(coro):
    return await asyncio.wait_for(coro, STEP_TIMEOUT)


async def run(args):
    compression = "deflate" if args.deflate else None
    tls = None
    if args.url.startswith("wss:"):
        tls = ssl.create_default_context(cafile=args.cafile)
    async with websockets.connect(
        args.url,
        ssl=tls,
        compression=compression,
        subprotocols=args.subprotocol or None,
        max_size=None,
        ping_interval=None,
        open_timeout=STEP_TIMEOUT,
        close_timeout=STEP_TIMEOUT,
    ) as ws:
        if tls is not None:
            tls_object = ws.transport.get_extra_info("ssl_object")
            check(tls_object is not None, "TLS %s" % (tls_object and tls_object.version()))
        names = [type(e).__name__ for e in ws.extensions]
        if args.deflate:
            check(names == ["PerMessageDeflate"], "permessage-deflate negotiated (%s)" % names)
        else:
            check(names == [], "no extension negotiated (%s)" % names)
        if args.expect_subprotocol is not None:
            want = None if args.expect_subprotocol == "none" else args.expect_subprotocol
            check(ws.subprotocol == want, "subprotocol %r (want %r)" % (ws.subprotocol, want))

        for i, n in enumerate(LENGTHS):
            text = text_payload(n, i)
            await step(ws.send(text))
            back = await step(ws.recv())
            check(isinstance(back, str) and back == text, "text echo of %d bytes" % n)
            data = os.urandom(n)
            await step(ws.send(data))
            back = await step(ws.recv())
            check(isinstance(back, bytes) and back == data, "binary echo of %d bytes" % n)

        # Several messages in flight at once come back in order.
        burst = [("msg-%d " % i) * (i + 1) for i in range(20)]
        for m in burst:
            await step(ws.send(m))
        got = [await step(ws.recv()) for _ in burst]
        check(got == burst, "20 pipelined messages echoed in order")

        # A message sent in 50 fragments comes back whole.
        fragments = ["fragment-%02d|" % i for i in range(50)]
        await step(ws.send(fragments))
        back = await step(ws.recv())
        check(back == "".join(fragments), "50-fragment message echoed whole")

        pong = await step(ws.ping(b"are you there?"))
        await step(pong)
        check(True, "pong for a ping with a payload")

        await step(ws.close(code=4001, reason="done here"))
        check(ws.close_code == 4001, "close code echoed (%s)" % ws.close_code)
    print("ALL OK", flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--deflate", action="store_true")
    p.add_argument("--subprotocol", action="append")
    p.add_argument("--expect-subprotocol")
    p.add_argument("--cafile")
    args = p.parse_args()
    try:
        asyncio.run(run(args))
    except Failure as e:
        print("FAIL", e, flush=True)
        return 1
    except Exception as e:  # a connection error, a timeout: say which
        print("FAIL %s: %s" % (type(e).__name__, e), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
